"""HTTP callouts (proxy_http_call) in nginx: the plugin
tests/nginx/plugins/callout.wasm calls services started here on 127.0.0.1
(Python threading servers: plain, TLS with a CA made by the test, slow,
resetting, chunked with trailers) through upstream{} blocks or literal
targets allowed by proxy_wasm_callout_allow."""

import concurrent.futures
import http.client
import http.server
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import Nginx
from dnsserver import DnsServer


class Service:
    """An HTTP/1.1 service (keep-alive) that counts accepted connections
    and requests. Paths: /auth (200 "ok <name>" for "Bearer good", 403 for
    "Bearer bad", else 401), /slow (2 s, then 200), /reset (RST),
    /chunked (chunked, trailer x-check: trailer-ok), /token ("tok-123"),
    /echo (the request body and the x-trailer trailer, as a JSON-less
    line)."""

    def __init__(self, name, tls=None):
        self.name = name
        self.connections = 0
        self.requests = []
        svc = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                with lock:
                    svc.connections += 1
                super().setup()

            def reply(self, status, body, extra=()):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with lock:
                    svc.requests.append((self.command, self.path, dict(self.headers.items())))
                path = self.path
                if path.startswith("/auth"):
                    auth = self.headers.get("authorization", "")
                    if auth == "Bearer good":
                        self.reply(200, f"ok {svc.name}".encode())
                    elif auth == "Bearer bad":
                        self.reply(403, b"forbidden")
                    else:
                        self.reply(401, b"who are you")
                elif path.startswith("/slow"):
                    time.sleep(2)
                    self.reply(200, b"slow")
                elif path.startswith("/reset"):
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif path.startswith("/chunked"):
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Trailer", "x-check")
                    self.end_headers()
                    for part in (b"hello ", b"chunked ", b"world"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\nx-check: trailer-ok\r\n\r\n")
                elif path.startswith("/token"):
                    self.reply(200, b"tok-123")
                elif path.startswith("/echo"):
                    body, trailers = self.read_body()
                    self.reply(200, b"got " + body + b" " + trailers.encode())
                else:
                    self.reply(404, b"no")

            def read_body(self):
                if self.headers.get("transfer-encoding", "").lower() != "chunked":
                    n = int(self.headers.get("content-length") or 0)
                    return self.rfile.read(n), ""
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline()
                trailers = []
                while True:
                    line = self.rfile.readline().strip()
                    if not line:
                        break
                    trailers.append(line.decode())
                return body, ",".join(trailers)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 2048   # 1,000 connections at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.addr = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Big(Nginx):
    """nginx with room for many connections (the template has 128)."""

    def write_conf(self, http, level="info", workers=1, stream=None):
        super().write_conf(http, level, workers, stream)
        with open(self.conf) as f:
            text = f.read()
        text = text.replace("worker_connections 128;", "worker_connections 8192;")
        text = text.replace("daemon off;", "daemon off;\nworker_rlimit_nofile 20000;")
        with open(self.conf, "w") as f:
            f.write(text)


@pytest.fixture
def svc():
    services = []

    def make(name, tls=None):
        s = Service(name, tls)
        services.append(s)
        return s

    yield make
    for s in services:
        s.close()


@pytest.fixture
def ngx(tmp_path, upstream):
    n = Big(tmp_path / "nginx", upstream)
    yield n
    n.stop()


def conf(extra="", config=""):
    return f"""
    proxy_wasm_module callout @WASM:tests/nginx/plugins/callout.wasm@;
    {extra}
    server {{
        listen 127.0.0.1:@PORT@ reuseport;
        location / {{
            proxy_wasm callout {config};
            proxy_pass http://@UPSTREAM@;
        }}
    }}
"""


def test_auth_from_request_headers_pauses_then_continues_or_denies(ngx, upstream, svc):
    a = svc("a")
    ngx.start(conf(f"upstream auth_cluster {{ server {a.addr}; }}"), workers=2)
    r = ngx.request("/x", headers={"x-call": "auth_cluster", "authorization": "Bearer good"})
    assert r.status == 200 and r.body == b"upstream ok\n", (r.status, r.body, ngx.log())
    # the paused request went on with the answer's status and body
    assert upstream.header_values("x-auth-status") == ["200"]
    assert upstream.header_values("x-auth-body") == ["ok a"]
    # what the auth service received: the pseudo-headers as a request line
    # and Host, the forwarded header
    method, path, headers = a.requests[-1]
    assert (method, path) == ("GET", "/auth")
    assert headers["Host"] == "auth.test" and headers["x-from"] == "pwasm"
    r = ngx.request("/x", headers={"x-call": "auth_cluster", "authorization": "Bearer bad"})
    assert (r.status, r.body) == (403, b"denied 403\n")
    r = ngx.request("/x", headers={"x-call": "auth_cluster"})
    assert (r.status, r.body) == (401, b"denied 401\n")
    assert len(upstream.requests) == 1
    assert re.search(r"callout: response ctx=\d+ token=\d+ status=401 headers=\d+ body=11",
                     ngx.log())


def test_timeout_calls_back_with_zeros_and_logs_the_reason(ngx, svc):
    a = svc("a")
    ngx.start(conf(f"upstream slow {{ server {a.addr}; }}"), workers=2)
    t0 = time.time()
    r = ngx.request("/x", headers={"x-call": "slow", "x-call-path": "/slow",
                                   "x-call-timeout": "300"})
    assert time.time() - t0 < 1.5
    assert (r.status, r.body) == (504, b"callout failed: timeout\n"), ngx.log()
    log = ngx.log()
    assert re.search(r'callout \d+ to "slow" failed: timeout', log), log
    assert re.search(r"callout: failed ctx=\d+ token=\d+ code=11 reason=timeout", log)


def test_literal_targets_need_an_allow(ngx, upstream, svc):
    a = svc("a")
    b = svc("b")
    ngx.start(conf(f"proxy_wasm_callout_allow callout {a.addr};\n"
                   f"proxy_wasm_callout_allow other {b.addr};"))
    r = ngx.request("/x", headers={"x-call": a.addr, "authorization": "Bearer good"})
    assert r.status == 200, (r.body, ngx.log())
    assert upstream.header_values("x-auth-body") == ["ok a"]
    # allowed to another module only; an unknown name
    for target in (b.addr, "127.0.0.1:1", "nowhere"):
        r = ngx.request("/x", headers={"x-call": target})
        assert (r.status, r.body) == (500, b"refused 2\n"), target  # BadArgument
    log = ngx.log()
    assert f'callout to "{b.addr}" refused: not allowed' in log
    assert 'callout to "nowhere" refused: no upstream{} block' in log


def test_upstream_block_balances_across_its_servers(ngx, svc):
    a = svc("a")
    b = svc("b")
    ngx.start(conf(f"upstream pair {{ server {a.addr}; server {b.addr}; }}"), workers=2)
    for _ in range(20):
        r = ngx.request("/x", headers={"x-call": "pair", "authorization": "Bearer good"})
        assert r.status == 200
    assert len(a.requests) >= 5 and len(b.requests) >= 5, (len(a.requests), len(b.requests))
    assert len(a.requests) + len(b.requests) == 20


def test_reset_and_chunked_with_trailers(ngx, upstream, svc):
    a = svc("a")
    ngx.start(conf(f"upstream s {{ server {a.addr}; }}"))
    r = ngx.request("/x", headers={"x-call": "s", "x-call-path": "/reset"})
    assert r.status == 504 and r.body.startswith(b"callout failed: "), (r.body, ngx.log())
    assert re.search(r'callout \d+ to "s" failed: (connection reset|connection closed early)',
                     ngx.log())
    r = ngx.request("/x", headers={"x-call": "s", "x-call-path": "/chunked"})
    assert r.status == 200, (r.body, ngx.log())
    assert upstream.header_values("x-auth-body") == ["hello chunked world"]
    assert upstream.header_values("x-auth-trailer") == ["trailer-ok"]
    # a request body goes with its Content-Length (on the kept connection)
    r = ngx.request("/x", headers={"x-call": "s", "x-call-path": "/echo",
                                   "x-call-body": "payload"})
    assert r.status == 200
    assert upstream.header_values("x-auth-body") == ["got payload "]


def make_ca(tmp):
    """A CA and a server certificate for "auth.test" and 127.0.0.1."""
    def run(*args):
        subprocess.run(args, check=True, capture_output=True, cwd=tmp)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=pwasm test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=auth.test",
        "-keyout", "srv.key", "-out", "srv.csr")
    with open(os.path.join(tmp, "ext"), "w") as f:
        f.write("subjectAltName=DNS:auth.test,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "srv.pem")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tmp, "srv.pem"), os.path.join(tmp, "srv.key"))
    return os.path.join(tmp, "ca.pem"), ctx


def test_tls_verified_with_the_trusted_ca_only(ngx, upstream, svc, tmp_path):
    ca, ctx = make_ca(str(tmp_path))
    a = svc("tls", tls=ctx)
    tls_headers = {"x-call": "secure", "x-call-scheme": "https",
                   "authorization": "Bearer good"}
    ngx.start(conf(f"upstream secure {{ server {a.addr}; }}\n"
                   f"proxy_wasm_callout_ssl_trusted_certificate {ca};"))
    r = ngx.request("/x", headers=tls_headers)
    assert r.status == 200, (r.body, ngx.log())
    assert upstream.header_values("x-auth-body") == ["ok tls"]
    # a name the certificate does not have
    r = ngx.request("/x", headers=dict(tls_headers, **{"x-call-authority": "other.test"}))
    assert (r.status, r.body) == (504, b"callout failed: TLS certificate not trusted\n")
    ngx.stop()
    # without the CA: refused
    ngx.start(conf(f"upstream secure {{ server {a.addr}; }}"))
    r = ngx.request("/x", headers=tls_headers)
    assert (r.status, r.body) == (504, b"callout failed: TLS certificate not trusted\n")
    assert "not trusted" in ngx.log()


def test_client_gone_before_the_answer_no_callback(ngx, upstream, svc):
    a = svc("a")
    ngx.start(conf(f"upstream slow {{ server {a.addr}; }}"), workers=2)
    c = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=5)
    c.request("GET", "/x", headers={"x-call": "slow", "x-call-path": "/slow"})
    time.sleep(0.5)
    c.close()  # nginx finalizes the request: its call is cancelled
    time.sleep(2.5)
    log = ngx.log()
    assert "callout: response" not in log and "callout: failed" not in log, log
    assert "signal" not in log and "[alert]" not in log, log
    r = ngx.request("/x", headers={"x-call": "slow", "x-call-path": "/auth",
                                   "authorization": "Bearer good"})
    assert r.status == 200


def test_keepalive_reuses_connections(ngx, svc):
    a = svc("a")
    ngx.start(conf(f"upstream auth {{ server {a.addr}; }}"))
    for _ in range(30):
        r = ngx.request("/x", headers={"x-call": "auth", "authorization": "Bearer good"})
        assert r.status == 200
    assert len(a.requests) == 30
    assert a.connections <= 2, a.connections


def test_callout_from_tick_feeds_shared_data(ngx, svc):
    a = svc("a")
    ngx.start(conf(f"upstream tok {{ server {a.addr}; }}",
                   config='"config=tick=100 target=tok path=/token"'), workers=2)
    deadline = time.time() + 10
    while time.time() < deadline:
        r = ngx.request("/x", headers={"x-read": "token"})
        if r.body == b"found tok-123\n":
            break
        time.sleep(0.1)
    assert r.body == b"found tok-123\n", ngx.log()


def test_a_thousand_concurrent_callouts(ngx, svc):
    a = svc("a")
    ngx.start(conf(f"upstream auth {{ server {a.addr}; }}"))
    # one request makes 1,000 calls at once, answered when all are back
    r = ngx.request("/x", headers={"x-call": "auth", "x-call-count": "1000",
                                   "authorization": "Bearer good"})
    assert (r.status, r.body) == (200, b"answered 1000 ok 1000 failed 0\n"), ngx.log()[-3000:]
    # and 200 concurrent client requests, one call each
    def one(_):
        return ngx.request("/x", headers={"x-call": "auth",
                                          "authorization": "Bearer good"}).status
    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        statuses = list(ex.map(one, range(200)))
    assert statuses == [200] * 200


# ---------------------------------------------------------------- resolver
#
# Hostname targets with http{}'s `resolver`: resolved at call time by
# nginx's resolver against tests/nginx/dnsserver.py (auth.pwasm.test ->
# 127.0.0.1, anything else NXDOMAIN). nginx asks A and AAAA (ipv6=on).


@pytest.fixture
def dns():
    servers = []

    def make(**kw):
        d = DnsServer({"auth.pwasm.test": "127.0.0.1"}, **kw)
        servers.append(d)
        return d

    yield make
    for d in servers:
        d.close()


def resolver_conf(d, a, extra="", valid="2s", timeout="1s"):
    return conf(f"resolver 127.0.0.1:{d.port} valid={valid};\n"
                f"resolver_timeout {timeout};\n"
                f"proxy_wasm_callout_allow * auth.pwasm.test:{a.port} "
                f"nx.pwasm.test:{a.port};\n" + extra)


def assert_clean(log):
    assert "[alert]" not in log and "[crit]" not in log and "[emerg]" not in log, log
    assert "exited on signal" not in log, log


def test_resolver_hostname_target_resolved_at_call_time_then_cached(ngx, upstream, svc, dns):
    a = svc("a")
    d = dns()
    # not resolvable at configuration time (no /etc/hosts entry): nginx
    # starts only because the name is left to the resolver
    ngx.start(resolver_conf(d, a))
    assert d.names_asked() == []
    target = f"auth.pwasm.test:{a.port}"
    r = ngx.request("/x", headers={"x-call": target, "authorization": "Bearer good"})
    assert r.status == 200, (r.body, ngx.log())
    assert upstream.header_values("x-auth-body") == ["ok a"]
    assert d.names_asked() == ["auth.pwasm.test"]
    # soon after: from the resolver's cache (the answer comes inside
    # ngx_resolve_name), no query
    for _ in range(3):
        r = ngx.request("/x", headers={"x-call": target, "authorization": "Bearer good"})
        assert r.status == 200, (r.body, ngx.log())
    assert d.names_asked() == ["auth.pwasm.test"]
    assert len(a.requests) == 4
    # after `valid` (whole seconds: the answer stays valid while
    # ngx_time() <= its time + 2): asked again
    time.sleep(3.2)
    r = ngx.request("/x", headers={"x-call": target, "authorization": "Bearer good"})
    assert r.status == 200
    assert d.names_asked() == ["auth.pwasm.test"] * 2
    assert_clean(ngx.log())


def test_resolver_nxdomain_fails_the_call(ngx, svc, dns):
    a = svc("a")
    d = dns()
    ngx.start(resolver_conf(d, a))
    target = f"nx.pwasm.test:{a.port}"
    r = ngx.request("/x", headers={"x-call": target})
    # the hook accepted the call; the callback got the failure
    assert (r.status, r.body) == (504, b"callout failed: resolver error\n"), ngx.log()
    log = ngx.log()
    assert re.search(r'callout target "nx\.pwasm\.test:\d+": "nx\.pwasm\.test" could not be '
                     r'resolved \(3: Host not found\)', log), log
    assert re.search(r'callout \d+ to "nx\.pwasm\.test:\d+" failed: resolver error', log)
    assert d.names_asked() == ["nx.pwasm.test"]
    # again: nginx's resolver keeps no negative answer, it asks again
    r = ngx.request("/x", headers={"x-call": target})
    assert (r.status, r.body) == (504, b"callout failed: resolver error\n"), ngx.log()
    assert d.names_asked() == ["nx.pwasm.test"] * 2
    assert a.requests == []
    assert_clean(ngx.log())


def test_resolver_that_never_answers_fails_after_resolver_timeout(ngx, upstream, svc, dns):
    a = svc("a")
    d = dns(drop=True)
    ngx.start(resolver_conf(d, a, timeout="1s"))
    target = f"auth.pwasm.test:{a.port}"
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        t0 = time.time()
        pending = ex.submit(ngx.request, "/x", headers={"x-call": target})
        time.sleep(0.2)
        # the one worker serves other requests meanwhile
        for _ in range(5):
            t1 = time.time()
            r = ngx.request("/other")
            assert r.status == 200 and time.time() - t1 < 0.5
        assert not pending.done()
        r = pending.result(timeout=10)
        elapsed = time.time() - t0
    assert (r.status, r.body) == (504, b"callout failed: resolver error\n"), ngx.log()
    assert 0.9 < elapsed < 3, elapsed
    log = ngx.log()
    assert re.search(r'"auth\.pwasm\.test" could not be resolved \(110: Operation timed out\)',
                     log), log
    assert "auth.pwasm.test" in d.names_asked()
    assert a.requests == []
    assert_clean(log)


def test_client_gone_while_resolving(ngx, svc, dns):
    a = svc("a")
    d = dns(delay=1.5)
    ngx.start(resolver_conf(d, a))
    target = f"auth.pwasm.test:{a.port}"
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=5)
        c.request("GET", "/x", headers={"x-call": target, "authorization": "Bearer good"})
        time.sleep(0.3)
        c.close()  # the request ends while its call waits for the resolver
    time.sleep(2.5)  # the late answers arrive for cancelled resolutions
    log = ngx.log()
    assert "callout: response" not in log and "callout: failed" not in log, log
    assert_clean(log)
    assert a.requests == []
    d.delay = 0
    r = ngx.request("/x", headers={"x-call": target, "authorization": "Bearer good"})
    assert r.status == 200, (r.body, ngx.log())
    assert_clean(ngx.log())


def test_trap_in_a_resolver_callback_cancels_a_call_waiting_on_the_same_name(ngx, svc, dns):
    # two calls wait for the same name; the first failure's callback traps,
    # which discards the VM and cancels the second call while nginx's
    # resolver is still walking the list of waiting calls
    a = svc("a")
    d = dns(delay=0.5)
    ngx.start(resolver_conf(d, a), level="debug")
    r = ngx.request("/x", headers={"x-call": f"nx.pwasm.test:{a.port}",
                                   "x-call-count": "2", "x-call-trap": "1"})
    assert r.status in (500, 503), (r.status, r.body, ngx.log())
    log = ngx.log()
    assert "its VM is discarded" in log, log
    # nginx 1.22 says at debug level that it was asked to cancel a context
    # it had taken off its waiting list already (and then uses it)
    assert "could not cancel" not in log
    assert_clean(log)
    # the worker goes on
    r = ngx.request("/x", headers={"x-call": f"auth.pwasm.test:{a.port}",
                                   "authorization": "Bearer good"})
    assert r.status == 200, (r.body, ngx.log())
    assert_clean(ngx.log())


# ---------------------------------------------------------------- trailers


def test_request_trailers_go_after_a_chunked_body(ngx, upstream, svc):
    # callout.wasm sends them with pw_http_call_with_trailers; the
    # service's /echo parses the chunked body and the trailers by hand
    a = svc("a")
    ngx.start(conf(f"upstream s {{ server {a.addr}; }}"))
    r = ngx.request("/x", headers={"x-call": "s", "x-call-path": "/echo",
                                   "x-call-body": "payload", "x-call-trailer": "x-sig=abc123"})
    assert r.status == 200, (r.body, ngx.log())
    assert upstream.header_values("x-auth-body") == ["got payload x-sig: abc123"]
    method, path, headers = a.requests[-1]
    assert (method, path) == ("POST", "/echo")
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers
    # no body: the last chunk, then the trailers
    r = ngx.request("/x", headers={"x-call": "s", "x-call-path": "/echo",
                                   "x-call-trailer": "x-sig=only"})
    assert r.status == 200, (r.body, ngx.log())
    assert upstream.header_values("x-auth-body") == ["got  x-sig: only"]
    assert a.requests[-1][2].get("Transfer-Encoding") == "chunked"
    # without trailers: Content-Length, as before
    r = ngx.request("/x", headers={"x-call": "s", "x-call-path": "/echo",
                                   "x-call-body": "plain"})
    assert upstream.header_values("x-auth-body") == ["got plain "]
    assert a.requests[-1][2].get("Content-Length") == "5"
    assert_clean(ngx.log())


# ------------------------------------------------------------------ limits


class RawService:
    """A TCP service on 127.0.0.1 answering each request with the bytes
    `answers[path]` exactly (then closing), so that the sizes of the
    status line, headers and body are known to the byte; a list of bytes
    is sent in parts, 0.2 s apart."""

    def __init__(self, answers):
        self.answers = answers
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2048)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        with c:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.answer(c, data.split(b" ")[1].decode())

    def answer(self, c, path):
        answer = self.answers[path]
        try:
            # a list: its parts with a pause between (separate reads)
            for i, part in enumerate(answer if isinstance(answer, list) else [answer]):
                if i:
                    time.sleep(0.2)
                c.sendall(part)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def head_of(size, body_headers):
    """A status line and headers of exactly `size` bytes (with the empty
    line), padded with an x-pad header, ending with body_headers."""
    start = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
    end = body_headers + b"\r\n"
    pad = size - len(start) - len(end) - len(b"x-pad: \r\n")
    head = start + b"x-pad: " + b"p" * pad + b"\r\n" + end
    assert len(head) == size
    return head


def chunked(body, size=1000):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


def test_response_header_and_body_limits(ngx, upstream):
    body_ok, body_over = b"b" * 4096, b"b" * 4097
    raw = RawService({
        "/h-ok": head_of(1024, b"Content-Length: 2\r\n") + b"ok",
        "/h-over": head_of(1025, b"Content-Length: 2\r\n") + b"ok",
        "/cl-ok": head_of(200, b"Content-Length: 4096\r\n") + body_ok,
        "/cl-over": head_of(200, b"Content-Length: 4097\r\n") + body_over,
        "/ch-ok": head_of(200, b"Transfer-Encoding: chunked\r\n") + chunked(body_ok),
        "/ch-over": head_of(200, b"Transfer-Encoding: chunked\r\n") + chunked(body_over),
        "/close-over": head_of(200, b"") + body_over,
    })
    try:
        ngx.start(conf(f"upstream raw {{ server {raw.addr}; }}\n"
                       "proxy_wasm_callout_max_response_headers 1k;\n"
                       "proxy_wasm_callout_max_response_body 4k;"))
        for path in ("/h-ok", "/cl-ok", "/ch-ok"):
            r = ngx.request("/x", headers={"x-call": "raw", "x-call-path": path})
            assert r.status == 200, (path, r.body, ngx.log())
        assert upstream.header_values("x-auth-body") == ["b" * 200]
        for path in ("/h-over", "/cl-over", "/ch-over", "/close-over"):
            r = ngx.request("/x", headers={"x-call": "raw", "x-call-path": path})
            assert (r.status, r.body) == (504, b"callout failed: response too large\n"), \
                (path, r.body, ngx.log())
        log = ngx.log()
        assert len(re.findall(r'callout \d+ to "raw" failed: response too large', log)) == 4
        assert len(re.findall(r"callout: failed ctx=\d+ token=\d+ code=11 "
                              r"reason=response too large", log)) == 4
        assert_clean(log)
    finally:
        raw.close()


def test_header_and_trailer_lines_split_across_reads(ngx, upstream):
    # the parsers keep pointers into the read buffer while a line is
    # incomplete: a line split across two reads must come out whole
    body = b"t" * 5000
    raw = RawService({
        "/split-header": [b"HTTP/1.1 200 OK\r\nx-split: abc", b"def\r\nContent-Length: 11\r\n"
                          b"\r\nsplit-value"],
        "/split-status": [b"HTTP/1.1 20", b"0 OK\r\nContent-Length: 2\r\n\r\nok"],
        "/split-trailer": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + chunked(body)[:-2] + b"x-check: trai", b"ler-ok\r\n\r\n"],
    })
    try:
        ngx.start(conf(f"upstream raw {{ server {raw.addr}; }}\n"
                       "proxy_wasm_callout_max_response_headers 1k;"))
        r = ngx.request("/x", headers={"x-call": "raw", "x-call-path": "/split-header"})
        assert r.status == 200, (r.body, ngx.log())
        assert upstream.header_values("x-auth-body") == ["split-value"]
        assert re.search(r"callout: response ctx=\d+ token=\d+ status=200 headers=3 body=11",
                         ngx.log())
        r = ngx.request("/x", headers={"x-call": "raw", "x-call-path": "/split-status"})
        assert r.status == 200, (r.body, ngx.log())
        assert upstream.header_values("x-auth-body") == ["ok"]
        r = ngx.request("/x", headers={"x-call": "raw", "x-call-path": "/split-trailer"})
        assert r.status == 200, (r.body, ngx.log())
        assert upstream.header_values("x-auth-trailer") == ["trailer-ok"]
        assert_clean(ngx.log())
    finally:
        raw.close()


class HoldService(RawService):
    """Reads each request and never answers; counts the requests and the
    connections the client (nginx) closed."""

    def __init__(self):
        self.requests = 0
        self.closed = 0
        self.lock = threading.Lock()
        super().__init__({})

    def answer(self, c, path):
        with self.lock:
            self.requests += 1
        while c.recv(4096):
            pass
        with self.lock:
            self.closed += 1

    def wait(self, what, n, timeout=10):
        deadline = time.time() + timeout
        while getattr(self, what) < n and time.time() < deadline:
            time.sleep(0.01)
        return getattr(self, what)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def test_client_gone_before_the_answer_200_times_no_callback_no_leak(ngx, upstream):
    hold = HoldService()
    try:
        ngx.start(conf(f"upstream hold {{ server {hold.addr}; }}"))
        started = ngx.wait_log(r"start worker process (\d+)", timeout=60)
        assert started, ngx.log()[-2000:]
        pid = int(started.group(1))
        per, rss = 10, {}
        for i in range(200):
            c = socket.create_connection(("127.0.0.1", ngx.port))
            c.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nx-call: hold\r\n"
                      b"x-call-count: %d\r\n\r\n" % per)
            # every call is at the service, waiting, when the client goes
            assert hold.wait("requests", (i + 1) * per) == (i + 1) * per, ngx.log()[-2000:]
            c.close()
            if i in (49, 199):
                # nginx closed the calls' connections (the cancel)
                assert hold.wait("closed", (i + 1) * per) == (i + 1) * per
                rss[i] = rss_kb(pid)
        log = ngx.log()
        assert "callout: response" not in log and "callout: failed" not in log, log[-2000:]
        assert_clean(log)
        # 1,500 calls cancelled between the two measures: a leak of one
        # call's pool (> 1 kB) each would be > 1.5 MB
        assert rss[199] - rss[49] < 1024, rss
        # and the worker still answers
        r = ngx.request("/x")
        assert r.status == 200
    finally:
        hold.close()
