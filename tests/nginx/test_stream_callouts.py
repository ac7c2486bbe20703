"""HTTP callouts from stream (TCP) plugins: tests/nginx/plugins/tcp_auth.c
pauses each new connection, asks a Python HTTP auth service on 127.0.0.1
and continues or closes the connection by its answer. The target is an
upstream{} block of http{} or a host:port allowed by stream{}'s
proxy_wasm_callout_allow."""

import http.server
import socket
import time

import pytest

from conftest import free_port
from test_stream import HTTP, Echo, read_all

PLUGIN = "tests/nginx/plugins/tcp_auth.wasm"


class Auth(Echo):
    """Answers GET /check?client=... with `status` (200 allows) after
    `delay` seconds; keeps the paths asked."""

    def __init__(self):
        self.status = 200
        self.delay = 0.0
        self.paths = []
        auth = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth.paths.append(self.path)
                time.sleep(auth.delay)
                body = b"ok\n" if auth.status == 200 else b"denied\n"
                self.send_response(auth.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.serve(Handler)


@pytest.fixture
def auth():
    a = Auth()
    yield a
    a.close()


@pytest.fixture
def echo():
    e = Echo(b"E:")
    yield e
    e.close()


def start(nginx, auth, echo, config="", main=""):
    port = free_port()
    http = HTTP + f"upstream auth_service {{ server 127.0.0.1:{auth.port}; }}\n"
    stream = f"""
    proxy_wasm_module tcp_auth @WASM:{PLUGIN}@;
{main}
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm tcp_auth{config};
        proxy_pass 127.0.0.1:{echo.port};
    }}
"""
    nginx.start(http, stream=stream)
    return port


def talk(port, data, n):
    """Sends data at once (before the auth answer), reads n bytes or
    until the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while len(out) < n:
            try:
                d = s.recv(n - len(out))
            except ConnectionResetError:    # closed with bytes unread
                break
            if not d:
                break
            out += d
        return out


def test_allowed_connection_continues(nginx, auth, echo):
    """200: the connection goes on; the bytes the client sent while the
    plugin waited for the answer reach the upstream, in order."""
    auth.delay = 0.3
    port = start(nginx, auth, echo)
    assert talk(port, b"hello\n", 8) == b"E:hello\n"
    # source.address is address:port, as in Envoy
    assert len(auth.paths) == 1 and auth.paths[0].startswith("/check?client=127.0.0.1:")
    assert nginx.wait_log(r"tcp_auth: ctx=\d+ status 200: continue")


def test_denied_connection_closed(nginx, auth, echo):
    auth.status = 403
    port = start(nginx, auth, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello\n")
        assert read_all(s) == b""        # closed, nothing from the upstream
    assert nginx.wait_log(r"tcp_auth: ctx=\d+ status 403: close")
    assert len(auth.paths) == 1


def test_failed_call_closes(nginx, auth, echo):
    """The auth service is down: the call fails, the connection is closed."""
    auth.close()
    port = start(nginx, auth, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello\n")
        assert read_all(s) == b""
    assert nginx.wait_log(r"tcp_auth: ctx=\d+ failed: .+: close")


def test_literal_target_allowed_in_stream(nginx, auth, echo):
    """A host:port target: allowed by stream{}'s proxy_wasm_callout_allow,
    refused without it (not an upstream{} block: the call answers
    BadArgument and the plugin closes)."""
    target = f"127.0.0.1:{auth.port}"
    port = start(nginx, auth, echo, config=f" config={target}",
                 main=f"    proxy_wasm_callout_allow tcp_auth {target};")
    assert talk(port, b"hi\n", 5) == b"E:hi\n"
    nginx.stop()
    port = start(nginx, auth, echo, config=f" config={target}")
    assert talk(port, b"hi\n", 5) == b""
    assert nginx.wait_log(r'callout to "127\.0\.0\.1:\d+" refused: no upstream\{\} block')
    assert nginx.wait_log(r"tcp_auth: ctx=\d+ call 2")
    assert len(auth.paths) == 1


def test_stream_before_http_finds_upstream_blocks(nginx, auth, echo, monkeypatch):
    """http{}'s upstream{} blocks are looked up once the whole configuration
    is read: stream{} written before http{} finds them too."""
    import conftest
    t = conftest.CONF_TEMPLATE
    i, j = t.index("http {"), t.index("@STREAM@")
    monkeypatch.setattr(conftest, "CONF_TEMPLATE", t[:i] + "@STREAM@\n" + t[i:j] + t[j + 8:])
    port = start(nginx, auth, echo)
    with open(nginx.conf) as f:
        conf = f.read()
    assert conf.index("stream {") < conf.index("http {")
    for _ in range(3):
        assert talk(port, b"x\n", 4) == b"E:x\n"
    assert len(auth.paths) == 3
