"""The stream (TCP) module: network filters in nginx's stream{} with
build/ngx_stream_proxy_wasm_module.so, in front of Python TCP servers on
127.0.0.1 (tests/nginx/plugins/tcp_stream.c, configured per test)."""

import hashlib
import os
import re
import socket
import socketserver
import threading
import time

import pytest

from conftest import free_port

PLUGIN = "tests/nginx/plugins/tcp_stream.wasm"
HTTP = """
server {
    listen 127.0.0.1:@PORT@;
    location / { return 200; }
}
"""


class Echo:
    """A TCP server on 127.0.0.1 that sends back what it reads, prefixed
    once with `tag` when given; `sink`: reads and counts (sha256) instead."""

    def __init__(self, tag=b""):
        echo = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                if tag:
                    self.request.sendall(tag)
                while True:
                    data = self.request.recv(65536)
                    if not data:
                        break
                    self.request.sendall(data)
                try:
                    self.request.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        self.serve(Handler)

    def serve(self, handler):
        """Listens on a free port of 127.0.0.1, a thread per connection."""
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.close()


def stream_conf(port, upstream, chain, extra="", main=""):
    return f"""
    proxy_wasm_module tcp @WASM:{PLUGIN}@;
{main}
    server {{
        listen 127.0.0.1:{port};
{chain}
{extra}
        proxy_half_close on;
        proxy_pass {upstream};
    }}
"""


def start(nginx, upstream, config, extra="", chain=None, level="info", main=""):
    port = free_port()
    if chain is None:
        chain = f'        proxy_wasm tcp "config={config}";'
    nginx.start(HTTP, level=level, stream=stream_conf(port, upstream, chain, extra, main))
    return port


def exchange(port, data, timeout=10):
    """Sends data, shuts the sending half, returns all bytes received."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return read_all(s)


def converse(port, data, n, timeout=10):
    """Sends data, returns the first n bytes received."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while len(out) < n:
            d = s.recv(n - len(out))
            if not d:
                break
            out += d
        return out


def read_all(s):
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        out += d
    return out


def test_events_and_modification(nginx, echo):
    port = start(nginx, f"127.0.0.1:{echo.port}", "upper events")
    assert exchange(port, b"hello world\n") == b"<HELLO WORLD\n"
    m = nginx.wait_log(r"ev on_log ctx=(\d+)")
    assert m, nginx.log()
    ctx = m.group(1)
    evs = re.findall(r"ev (\w+) ctx=" + ctx + r"(?: size=(\d+) eos=(\d))?(?: peer=(\d))?", nginx.log())
    names = [e[0] for e in evs]
    assert names[0] == "on_new_connection"
    assert "on_downstream_data" in names and "on_upstream_data" in names
    # the client shut its half: remote close; the upstream's end: remote too
    assert ("on_downstream_close", "", "", "2") in evs
    assert ("on_upstream_close", "", "", "2") in evs
    assert names[-2:] == ["on_done", "on_log"]
    # the data with end_of_stream came before the close of its side
    assert names.index("on_downstream_close") > names.index("on_downstream_data")


def test_prepend_append_drain(nginx, echo):
    port = start(nginx, f"127.0.0.1:{echo.port}", "drain=3 wrap")
    assert exchange(port, b"xxxpayload") == b"[payload]"


def test_large_transfer_paused_and_resumed(nginx, echo):
    """64 MiB each way through a plugin that holds every 100 KB, reads it
    all and continues: bytes and order identical on both sides."""
    port = start(nginx, f"127.0.0.1:{echo.port}", "hold=100000")
    total = 64 * 1024 * 1024
    block = hashlib.sha256(b"seed").digest() * 2048   # 64 KiB
    sent = hashlib.sha256()
    got = hashlib.sha256()
    received = [0]

    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        def reader():
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                got.update(d)
                received[0] += len(d)

        t = threading.Thread(target=reader)
        t.start()
        n = 0
        i = 0
        while n < total:
            chunk = block[i % 7:] + block[:i % 7]     # varying content
            s.sendall(chunk)
            sent.update(chunk)
            n += len(chunk)
            i += 1
        s.shutdown(socket.SHUT_WR)
        t.join(120)
        assert not t.is_alive()

    assert received[0] == n
    assert got.hexdigest() == sent.hexdigest()
    m = nginx.wait_log(r"sum down=(\d+)/(\d+) up=(\d+)/(\d+)")
    assert m, nginx.log()
    assert int(m.group(1)) == n and int(m.group(3)) == n
    assert m.group(2) == m.group(4)


def test_backpressure_limit(nginx, echo):
    """A plugin that holds until 100000 bytes, with proxy_wasm_max_held 16k:
    it never sees more than 16k, nothing reaches the upstream, and nginx
    stops reading the client (its sends block)."""
    port = start(nginx, f"127.0.0.1:{echo.port}", "hold=100000 events",
                 extra="        proxy_wasm_max_held 16k;\n        proxy_buffer_size 4k;")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setblocking(False)
        sent = 0
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                sent += s.send(b"a" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
                try:
                    sent += s.send(b"a" * 65536)
                except BlockingIOError:
                    break
        # the kernel's buffers fill: far less than 5 s of loopback traffic
        assert sent < 64 * 1024 * 1024
        time.sleep(0.3)
        try:
            assert s.recv(100) == b""
        except BlockingIOError:
            pass        # nothing came back: nothing reached the echo
    sizes = [int(x) for x in re.findall(r"ev on_downstream_data ctx=\d+ size=(\d+)", nginx.log())]
    assert sizes and max(sizes) == 16384, sizes


def test_close_from_plugin(nginx, echo):
    port = start(nginx, f"127.0.0.1:{echo.port}", "close")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello\n")
        assert s.recv(100) == b"hello\n"
        s.sendall(b"close now\n")
        assert read_all(s) == b""
    assert nginx.wait_log(r"close 0")


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_failure_policy(nginx, echo, policy):
    port = start(nginx, f"127.0.0.1:{echo.port}", "trap",
                 extra=f"        proxy_wasm_failure_policy {policy};")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello\n")
        assert s.recv(100) == b"hello\n"
        s.sendall(b"trap\n")
        if policy == "closed":
            assert read_all(s) == b""
        else:
            assert s.recv(100) == b"trap\n"
            s.sendall(b"more\n")
            assert s.recv(100) == b"more\n"
    m = nginx.wait_log(r"proxy_wasm \"tcp\" failed in on_downstream_data: .*")
    assert m, nginx.log()
    assert ("failure policy " + policy) in m.group(0)


def test_pause_new_connection_continued_by_tick(nginx, echo):
    """on_new_connection pauses; the root context's tick continues it
    (proxy_continue_stream from another context: the wake hook). Bytes
    sent before are held and delivered in order."""
    port = start(nginx, f"127.0.0.1:{echo.port}", "tick events")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"early ")
        time.sleep(0.2)
        s.sendall(b"bytes\n")
        s.shutdown(socket.SHUT_WR)
        assert read_all(s) == b"early bytes\n"
    assert nginx.wait_log(r"tick continues ctx=\d+: 0")


def test_route_with_set_envoy_filter_state(nginx):
    """The plugin reads a first line and picks the upstream with
    set_envoy_filter_state(envoy.tcp_proxy.cluster): proxy_pass
    $proxy_wasm_upstream connects there (an upstream{} name or host:port)."""
    a, b = Echo(b"A:"), Echo(b"B:")
    try:
        port = free_port()
        stream = f"""
    proxy_wasm_module tcp @WASM:{PLUGIN}@;
    upstream backend_b {{ server 127.0.0.1:{b.port}; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm tcp config=route;
        proxy_half_close on;
        proxy_pass $proxy_wasm_upstream;
    }}
"""
        nginx.start(HTTP, stream=stream)
        # no half close: nginx's preread phase ends a session whose client
        # closed its half before the phase is over
        assert converse(port, f"ROUTE 127.0.0.1:{a.port}\nhello\n".encode(), 8) == b"A:hello\n"
        assert converse(port, b"ROUTE backend_b\nworld\n", 8) == b"B:world\n"
        assert nginx.wait_log(r"route backend_b: 0")
    finally:
        a.close()
        b.close()


def test_properties(nginx, echo):
    port = start(nginx, f"127.0.0.1:{echo.port}", "props")
    assert exchange(port, b"x") == b"x"
    log = nginx.wait_log(r"prop upstream\.address=\S+") and nginx.log()
    assert "prop source.address=127.0.0.1:" in log
    assert f"prop destination.port={port}" in log
    assert re.search(r"prop connection\.id=\d+", log)
    assert "prop connection.mtls=0" in log
    assert "prop connection.requested_server_name=" in log
    assert f"prop ngx.server_port={port}" in log
    assert "prop ngx.remote_addr=127.0.0.1" in log
    assert f"prop upstream.address=127.0.0.1:{echo.port}" in log


def test_chain_in_order(nginx, echo):
    """Two plugins on one server: downstream bytes through the first then
    the second (drain then wrap), upstream the same order."""
    # two VMs: the plugin keeps its configuration in globals
    chain = ('        proxy_wasm tcp "config=drain=2";\n'
             '        proxy_wasm tcp2 config=wrap;')
    port = start(nginx, f"127.0.0.1:{echo.port}", None, chain=chain,
                 main=f"    proxy_wasm_module tcp2 @WASM:{PLUGIN}@ vm_id=two;")
    assert exchange(port, b"--abc") == b"[abc]"


def test_config_errors(nginx):
    port = free_port()
    rc, err = nginx.test_config(HTTP, stream=f"""
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm nosuch;
        proxy_pass 127.0.0.1:1;
    }}
""")
    assert rc != 0
    assert 'proxy_wasm "nosuch": no proxy_wasm_module with this name' in err
    rc, err = nginx.test_config(HTTP, stream=f"""
    proxy_wasm_module tcp @WASM:{PLUGIN}@;
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm tcp;
        proxy_wasm_failure_policy maybe;
        proxy_pass 127.0.0.1:1;
    }}
""")
    assert rc != 0
    assert "invalid value \"maybe\"" in err


@pytest.fixture
def redis(tmp_path):
    import shutil
    import subprocess
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is missing: run make deps (apt-get install redis-server)")
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    p.terminate()
    p.wait(10)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def test_redis_guard(nginx, redis):
    """Debian's redis-server behind examples/c/redis_guard: allowed commands
    work, FLUSHALL gets the error and the connection stays usable, a
    pipeline split across segments mid-command is parsed."""
    port = free_port()
    nginx.start(HTTP, stream=f"""
    proxy_wasm_module redis_guard @WASM:examples/redis_guard.wasm@;
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm redis_guard;
        proxy_pass 127.0.0.1:{redis};
    }}
""")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        def expect(data):
            got = b""
            while len(got) < len(data):
                d = s.recv(65536)
                assert d, got
                got += d
            assert got == data

        s.sendall(resp("SET", "k", "v"))
        expect(b"+OK\r\n")
        s.sendall(resp("FLUSHALL"))
        expect(b"-ERR command 'flushall' is not allowed by redis_guard\r\n")
        s.sendall(resp("GET", "k"))
        expect(b"$1\r\nv\r\n")
        pipeline = resp("SET", "a", "1") + resp("FLUSHALL") + resp("GET", "a") + resp("PING")
        s.sendall(pipeline[:13])
        time.sleep(0.05)
        s.sendall(pipeline[13:31])
        time.sleep(0.05)
        s.sendall(pipeline[31:])
        expect(b"+OK\r\n-ERR command 'flushall' is not allowed by redis_guard\r\n"
               b"$1\r\n1\r\n+PONG\r\n")
