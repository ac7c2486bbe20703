"""TLS passthrough in nginx's stream{} with examples/c/sni_router: nginx
never terminates TLS; the plugin reads the SNI of the client's ClientHello
and picks the upstream{} block through set_envoy_filter_state
(envoy.tcp_proxy.cluster -> $proxy_wasm_upstream). The certificates are
made by the test with openssl (a CA, a.example, b.example); the TLS servers
are Python's ssl module on 127.0.0.1, each answering with its own name."""

import os
import socket
import socketserver
import ssl
import subprocess

import pytest

from conftest import free_port
from test_stream import HTTP, Echo, read_all

ROUTER = "examples/sni_router.wasm"
TCP = "tests/nginx/plugins/tcp_stream.wasm"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and a certificate for each of a.example and b.example."""
    d = str(tmp_path_factory.mktemp("pki"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=pwasm test CA", "-keyout", "ca.key", "-out", "ca.crt",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name in ("a.example", "b.example"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.crt", cwd=d)
    return d


class TlsServer(Echo):
    """A TLS server on 127.0.0.1 with the certificate of `name`: after the
    handshake it sends "I am NAME, you said LINE" for the first line read,
    and the server name the client asked (SNI) is kept in `snis`."""

    def __init__(self, pki, name):
        self.name = name
        self.snis = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(pki, f"{name}.crt"), os.path.join(pki, f"{name}.key"))

        def sni(sock, server_name, c):
            self.snis.append(server_name)
        ctx.sni_callback = sni
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    with ctx.wrap_socket(self.request, server_side=True) as t:
                        line = b""
                        while not line.endswith(b"\n"):
                            d = t.recv(1024)
                            if not d:
                                break
                            line += d
                        t.sendall(b"I am %s, you said %s" % (server.name.encode(), line))
                except (ssl.SSLError, OSError):
                    pass

        self.serve(Handler)


@pytest.fixture
def backends(pki):
    a, b, plain = TlsServer(pki, "a.example"), TlsServer(pki, "b.example"), Echo(b"PLAIN:")
    yield a, b, plain
    a.close()
    b.close()
    plain.close()


def start(nginx, backends, config, chain_extra=""):
    """nginx with stream{} upstreams backend_a, backend_b (TLS) and
    backend_plain (a plain echo) and one server: ssl_preread on, the
    sni_router with `config`, proxy_pass $proxy_wasm_upstream."""
    a, b, plain = backends
    port = free_port()
    stream = f"""
    proxy_wasm_module sni_router @WASM:{ROUTER}@;
    proxy_wasm_module tcp @WASM:{TCP}@;
    upstream backend_a {{ server 127.0.0.1:{a.port}; }}
    upstream backend_b {{ server 127.0.0.1:{b.port}; }}
    upstream backend_plain {{ server 127.0.0.1:{plain.port}; }}
    server {{
        listen 127.0.0.1:{port};
        ssl_preread on;
        proxy_wasm sni_router 'config={config}';
{chain_extra}
        proxy_pass $proxy_wasm_upstream;
    }}
"""
    nginx.start(HTTP, stream=stream)
    return port


def tls_client(pki, port, name, check_hostname=True):
    """A TLS client verifying against the test CA; returns (the CN of the
    server's certificate, what the server answered)."""
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
    ctx.check_hostname = check_hostname
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            cert = t.getpeercert()
            cn = dict(x[0] for x in cert["subject"])["commonName"]
            t.sendall(b"hello " + name.encode() + b"\n")
            return cn, read_all(t)


def client_hello(name):
    """The bytes of a real ClientHello for `name` (Python's ssl through a
    memory BIO: nothing is sent)."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


CONFIG = ('{"routes": {"a.example": "backend_a", "*.b.example": "backend_b", '
          '"b.example": "backend_b"}, "default": "backend_a"}')


def test_sni_routes_end_to_end(nginx, pki, backends):
    """Each name reaches its own TLS server through nginx: the client
    verifies the certificate against the test CA (so the handshake went
    through untouched, end to end) and gets that server's answer."""
    a, b, _ = backends
    port = start(nginx, backends, CONFIG)
    for _ in range(2):
        assert tls_client(pki, port, "a.example") == (
            "a.example", b"I am a.example, you said hello a.example\n")
        assert tls_client(pki, port, "b.example") == (
            "b.example", b"I am b.example, you said hello b.example\n")
    # the servers saw the client's own SNI: the ClientHello was not rewritten
    assert a.snis == ["a.example"] * 2 and b.snis == ["b.example"] * 2
    assert nginx.wait_log(r"sni_router: context \d+: sni b\.example -> backend_b \(route\)")
    # a wildcard route: b's certificate is for b.example only
    cn, answer = tls_client(pki, port, "www.b.example", check_hostname=False)
    assert (cn, answer) == ("b.example", b"I am b.example, you said hello www.b.example\n")
    assert b.snis[-1] == "www.b.example"


def test_unrouted_name_goes_to_default(nginx, pki, backends):
    a, _, _ = backends
    port = start(nginx, backends, CONFIG)
    cn, answer = tls_client(pki, port, "c.example", check_hostname=False)
    assert (cn, answer) == ("a.example", b"I am a.example, you said hello c.example\n")
    assert a.snis == ["c.example"]
    assert nginx.wait_log(r"sni c\.example -> backend_a \(default\)")


def test_client_hello_passes_byte_for_byte(nginx, backends):
    """With a plain echo server as the default, an unrouted ClientHello
    comes back exactly as it was sent; a non-TLS client gets the default
    too (README: not TLS -> default)."""
    port = start(nginx, backends, '{"routes": {"a.example": "backend_a"}, "default": "backend_plain"}')
    hello = client_hello("z.example")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # split in two: the router holds the first part (Pause) until the
        # whole record is there
        s.sendall(hello[:7])
        s.sendall(hello[7:])
        want = b"PLAIN:" + hello
        got = b""
        while len(got) < len(want):
            d = s.recv(65536)
            if not d:
                break
            got += d
        assert got == want
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        got = b""
        while len(got) < 12:
            d = s.recv(64)
            if not d:
                break
            got += d
        assert got == b"PLAIN:PING\r\n"
    assert nginx.wait_log(r"not TLS -> backend_plain \(default\)")


def test_no_default_closes(nginx, pki, backends):
    """Without a default, an unrouted name and a non-TLS client are
    closed (README); a routed name still works."""
    port = start(nginx, backends, '{"routes": {"a.example": "backend_a"}}')
    assert tls_client(pki, port, "a.example")[0] == "a.example"
    with pytest.raises((ssl.SSLError, OSError)):
        tls_client(pki, port, "c.example", check_hostname=False)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        assert read_all(s) == b""
    assert nginx.wait_log(r"sni c\.example: no route and no default: closing")
    assert backends[0].snis == ["a.example"]


def test_requested_server_name_with_ssl_preread(nginx, pki, backends):
    """connection.requested_server_name is ssl_preread's name (TLS not
    terminated by nginx): a second plugin of the chain logs it."""
    port = start(nginx, backends, CONFIG, chain_extra="        proxy_wasm tcp config=props;")
    assert tls_client(pki, port, "b.example")[0] == "b.example"
    assert nginx.wait_log(r"prop connection\.requested_server_name=b\.example\b"), nginx.log()
