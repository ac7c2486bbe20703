"""gRPC callouts (proxy_grpc_call, proxy_grpc_stream, proxy_grpc_send,
proxy_grpc_close, proxy_grpc_cancel) against a real gRPC server: Python's
grpcio (Debian's python3-grpcio) serving a .proto compiled at test time
with python3-grpc-tools. tests/nginx/plugins/grpc_client.wasm pauses each
request, makes the calls its x-* headers ask for and answers with a report
of every callback it got (see that file), so the tests assert on what a
client of nginx sees."""

import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT
from dnsserver import DnsServer

grpc = pytest.importorskip("grpc")

PROTO = """\
syntax = "proto3";
package pwtest;
message Msg { string text = 1; }
service Echo {
  rpc Unary(Msg) returns (Msg);
  rpc ServerStream(Msg) returns (stream Msg);
  rpc Bidi(stream Msg) returns (stream Msg);
  rpc Fail(Msg) returns (Msg);
  rpc Slow(Msg) returns (Msg);
  rpc Big(Msg) returns (Msg);
}
"""

CONF = """
    proxy_wasm_module grpc_client @WASM:tests/nginx/plugins/grpc_client.wasm@;
    upstream echo {
        @SERVERS@
    }
    @EXTRA@
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm grpc_client config=@TARGET@;
        }
    }
"""

FAIL_MESSAGE = "bad input: 100% wrong, caf\u00e9"


@pytest.fixture(scope="module")
def proto(tmp_path_factory):
    """The generated modules (pwtest_pb2, pwtest_pb2_grpc)."""
    d = tmp_path_factory.mktemp("proto")
    with open(d / "pwtest.proto", "w") as f:
        f.write(PROTO)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{d}", f"--python_out={d}",
                    f"--grpc_python_out={d}", str(d / "pwtest.proto")], check=True)
    sys.path.insert(0, str(d))
    try:
        pb2 = importlib.import_module("pwtest_pb2")
        pb2_grpc = importlib.import_module("pwtest_pb2_grpc")
    finally:
        sys.path.remove(str(d))
    return pb2, pb2_grpc


class Server:
    """The Echo service on 127.0.0.1 (on `port`, or a free one); `calls`
    keeps (method, text, {metadata}, time_remaining) of each call, `events`
    what Slow saw."""

    def __init__(self, proto, port=0):
        pb2, pb2_grpc = proto
        self.calls = []
        self.events = []
        srv = self

        class Echo(pb2_grpc.EchoServicer):
            def record(self, method, request, context):
                srv.calls.append((method, request.text, dict(context.invocation_metadata()),
                                  context.time_remaining()))

            def Unary(self, request, context):
                self.record("Unary", request, context)
                context.send_initial_metadata((("x-server", "py"),))
                context.set_trailing_metadata((("x-trailer", "t"),))
                return pb2.Msg(text=request.text)

            def ServerStream(self, request, context):
                self.record("ServerStream", request, context)
                for i in range(int(request.text)):
                    yield pb2.Msg(text=f"m{i}")

            def Bidi(self, requests, context):
                srv.calls.append(("Bidi", "", dict(context.invocation_metadata()), None))
                for r in requests:
                    yield pb2.Msg(text="echo:" + r.text)

            def Fail(self, request, context):
                self.record("Fail", request, context)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, FAIL_MESSAGE)

            def Slow(self, request, context):
                # text "NAME:MS": answers NAME after MS ms, unless cancelled
                self.record("Slow", request, context)
                name, ms = request.text.split(":")
                deadline = time.time() + int(ms) / 1000
                while time.time() < deadline:
                    if not context.is_active():
                        srv.events.append("cancelled:" + name)
                        return pb2.Msg()
                    time.sleep(0.01)
                srv.events.append("done:" + name)
                return pb2.Msg(text=name)

            def Big(self, request, context):
                self.record("Big", request, context)
                return pb2.Msg(text="x" * int(request.text))

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        pb2_grpc.add_EchoServicer_to_server(Echo(), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def stop(self):
        self.server.stop(0)


@pytest.fixture
def server(proto):
    s = Server(proto)
    yield s
    s.stop()


def start(nginx, server, extra="", workers=1, target="echo", servers=None):
    """nginx with the plugin calling `target`: by default the upstream{}
    block "echo" whose servers are `servers` (default: `server`)."""
    lines = "\n        ".join(f"server 127.0.0.1:{s.port};" for s in (servers or [server]))
    http = (CONF.replace("@TARGET@", target).replace("@SERVERS@", lines)
            .replace("@EXTRA@", extra))
    nginx.start(http, workers=workers)


def call(nginx, mode, **headers):
    h = {"x-mode": mode}
    h.update({"x-" + k: str(v) for k, v in headers.items()})
    r = nginx.request("/", headers=h)
    assert r.status == 200, (r.status, r.body)
    return r.body.decode().splitlines()


def clean_log(nginx):
    log = nginx.log()
    assert "[alert]" not in log and "[crit]" not in log and "[emerg]" not in log, log


def test_unary(nginx, server):
    start(nginx, server)
    lines = call(nginx, "unary", text="hello", meta="x-client=abc")
    assert lines[0] == "call 0"
    assert "initial x-server=py" in lines
    assert "msg hello" in lines
    assert "trailer x-trailer=t" in lines and "trailer grpc-status=0" in lines
    assert lines[-1] == "close 0 0 "
    # order: initial metadata, the message, the trailers, the close
    first = [i for i, l in enumerate(lines) if l.startswith("initial")]
    trailers = [i for i, l in enumerate(lines) if l.startswith("trailer")]
    assert max(first) < lines.index("msg hello") < min(trailers)
    method, text, md, remaining = server.calls[-1]
    assert (method, text) == ("Unary", "hello")
    assert md["x-client"] == "abc" and md["user-agent"].startswith("pwasm")
    assert remaining is None or remaining > 1e6  # no timeout: no grpc-timeout
    # the connection is reused: a second call works the same
    lines = call(nginx, "unary", text="again")
    assert "msg again" in lines and lines[-1] == "close 0 0 "
    clean_log(nginx)


def test_server_streaming_messages_arrive_in_order(nginx, server):
    start(nginx, server)
    lines = call(nginx, "server", text="6")
    assert [l for l in lines if l.startswith("msg")] == [f"msg m{i}" for i in range(6)]
    assert lines[-1] == "close 0 0 "


def test_bidi_sends_n_messages_half_closes_and_gets_n_answers(nginx, server):
    start(nginx, server)
    lines = call(nginx, "bidi", count=5)
    assert lines[0] == "call 0"
    assert [l for l in lines if l.startswith("msg")] == [f"msg echo:b{i}" for i in range(5)]
    assert lines[-1] == "close 0 0 "


def test_bidi_ping_pong_sends_from_the_receive_callback(nginx, server):
    start(nginx, server)
    lines = call(nginx, "pingpong", count=4)
    assert [l for l in lines if l.startswith("msg")] == [f"msg echo:b{i}" for i in range(4)]
    assert "half-close 0" in lines
    assert lines[-1] == "close 0 0 "


def test_deadline_exceeded(nginx, server):
    start(nginx, server)
    t0 = time.time()
    lines = call(nginx, "slow", text="late:3000", timeout=300)
    elapsed = time.time() - t0
    assert lines[0] == "call 0"
    assert re.fullmatch(r"close 4 4 .*", lines[-1]), lines
    assert elapsed < 2.5, elapsed
    # grpc-timeout told the server
    method, text, md, remaining = server.calls[-1]
    assert method == "Slow" and remaining is not None and remaining <= 0.35


def test_server_error_status_and_message(nginx, server):
    start(nginx, server)
    lines = call(nginx, "fail", text="x")
    # grpc-message arrives percent-encoded; the plugin sees it decoded
    assert lines[-1] == f"close 3 3 {FAIL_MESSAGE}"
    assert not any(l.startswith("msg") for l in lines)


def test_unknown_or_refused_target_is_a_parse_failure(nginx, server):
    literal = f"127.0.0.1:{server.port}"
    start(nginx, server, extra=f"proxy_wasm_callout_allow other_module {literal};")
    assert call(nginx, "unary", target="no_such_target") == ["call 4"]
    assert call(nginx, "bidi", target="no_such_target") == ["call 4"]
    # a literal address allowed to another module only
    assert call(nginx, "unary", target=literal) == ["call 4"]
    assert nginx.wait_log(r'callout to "no_such_target" refused')
    assert server.calls == []


def test_an_allowed_literal_target(nginx, server):
    literal = f"127.0.0.1:{server.port}"
    start(nginx, server, target=literal,
          extra=f"proxy_wasm_callout_allow grpc_client {literal};")
    lines = call(nginx, "unary", text="lit")
    assert "msg lit" in lines and lines[-1] == "close 0 0 "


def test_upstream_block_balances_across_its_servers(nginx, server, proto):
    other = Server(proto)
    try:
        start(nginx, server, servers=[server, other])
        for i in range(8):
            assert call(nginx, "unary", text=f"r{i}")[-1] == "close 0 0 "
        # nginx's round robin: both servers get calls
        assert len(server.calls) >= 2 and len(other.calls) >= 2, \
            (len(server.calls), len(other.calls))
        assert len(server.calls) + len(other.calls) == 8
    finally:
        other.stop()


def test_a_new_connection_after_the_server_restarts(nginx, server, proto):
    start(nginx, server, workers=1)
    assert call(nginx, "unary", text="one")[-1] == "close 0 0 "
    server.stop()  # closes the idle HTTP/2 connection (GOAWAY, then EOF)
    time.sleep(0.3)
    again = Server(proto, port=server.port)
    try:
        lines = call(nginx, "unary", text="two")
        assert "msg two" in lines and lines[-1] == "close 0 0 ", lines
    finally:
        again.stop()
    assert "[error]" not in nginx.log(), nginx.log()
    clean_log(nginx)


def test_connection_refused_is_unavailable(nginx, server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        start(nginx, server, extra=f"proxy_wasm_callout_allow * 127.0.0.1:{port};")
        lines = call(nginx, "unary", target=f"127.0.0.1:{port}")
    assert lines[0] == "call 0"
    assert re.fullmatch(r"close 14 14 .+", lines[-1]), lines


def test_cancel_gives_no_more_callbacks(nginx, server):
    start(nginx, server)
    # a first call opens the connection: the cancelled call's HEADERS then
    # leave at once, and its RST_STREAM follows (on a connection still
    # connecting, a cancelled call would never be sent at all)
    assert call(nginx, "unary")[-1] == "close 0 0 "
    lines = call(nginx, "cancel")
    # the first call was cancelled: only the second one's events follow
    assert lines[:3] == ["call 0", "cancel 0", "call 0"], lines
    assert [l for l in lines if l.startswith("msg")] == ["msg second"]
    assert lines[-1] == "close 0 0 "
    # the server saw the first call go (RST_STREAM(CANCEL))
    deadline = time.time() + 5
    while "cancelled:cancelled" not in server.events and time.time() < deadline:
        time.sleep(0.05)
    assert "cancelled:cancelled" in server.events, server.events
    assert "done:cancelled" not in server.events
    clean_log(nginx)


def test_large_messages_and_the_size_limit(nginx, server):
    start(nginx, server, extra="proxy_wasm_grpc_max_message_size 200k;")
    # spans many DATA frames
    lines = call(nginx, "big", text=150000)
    assert "msg len=150000" in lines and lines[-1] == "close 0 0 "
    lines = call(nginx, "big", text=300000)
    assert not any(l.startswith("msg") for l in lines)
    assert re.fullmatch(r"close 8 8 .*proxy_wasm_grpc_max_message_size.*", lines[-1]), lines
    # the connection still serves the next call
    assert "msg len=1000" in call(nginx, "big", text=1000)


def test_concurrent_calls_in_two_workers(nginx, server):
    start(nginx, server, workers=2)
    n = 60

    def one(i):
        mode = ("unary", "server", "bidi")[i % 3]
        return i, mode, call(nginx, mode, text=(f"t{i}" if mode == "unary" else "3"), count=3)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(n)))
    for i, mode, lines in results:
        assert lines[-1] == "close 0 0 ", (i, lines)
        msgs = [l for l in lines if l.startswith("msg")]
        if mode == "unary":
            assert msgs == [f"msg t{i}"]
        elif mode == "server":
            assert msgs == ["msg m0", "msg m1", "msg m2"]
        else:
            assert msgs == ["msg echo:b0", "msg echo:b1", "msg echo:b2"]
    clean_log(nginx)


def test_quit_waits_for_a_unary_call_with_a_timeout(nginx, server):
    start(nginx, server, workers=2)
    result = []
    t = threading.Thread(target=lambda: result.append(
        nginx.request("/", headers={"x-mode": "slow", "x-text": "q:800",
                                    "x-timeout": "10000"})))
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    nginx.proc.send_signal(signal.SIGQUIT)  # graceful: the request finishes
    nginx.proc.wait(timeout=30)
    t.join(30)
    assert result and result[0].status == 200
    lines = result[0].body.decode().splitlines()
    assert "msg q" in lines and lines[-1] == "close 0 0 "
    assert time.time() - t0 < 5  # the idle connection does not hold it
    clean_log(nginx)


# ---- examples/c/grpc_call: each request checked with check.Check/Allow


@pytest.fixture(scope="module")
def check_proto(tmp_path_factory):
    src = os.path.join(ROOT, "examples", "c", "grpc_call")
    d = tmp_path_factory.mktemp("check_proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--python_out={d}",
                    f"--grpc_python_out={d}", os.path.join(src, "check.proto")], check=True)
    sys.path.insert(0, str(d))
    try:
        return importlib.import_module("check_pb2"), importlib.import_module("check_pb2_grpc")
    finally:
        sys.path.remove(str(d))


@pytest.fixture
def check_server(check_proto):
    pb2, pb2_grpc = check_proto
    seen = []

    class Check(pb2_grpc.CheckServicer):
        def Allow(self, request, context):
            seen.append((request.method, request.path, request.authorization))
            if request.path.startswith("/slow"):
                time.sleep(2)
            if request.path.startswith("/broken"):
                context.abort(grpc.StatusCode.UNAVAILABLE, "backend down")
            if request.authorization == "Bearer good":
                return pb2.CheckResponse(allowed=True, reason="user 42")
            return pb2.CheckResponse(allowed=False, reason="bad token")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_CheckServicer_to_server(Check(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, seen
    server.stop(0)


def test_example_grpc_call(nginx, upstream, check_server):
    port, seen = check_server
    nginx.start(f"""
    proxy_wasm_module grpc_call @WASM:examples/grpc_call.wasm@;
    upstream check_service {{
        server 127.0.0.1:{port};
    }}
    server {{
        listen 127.0.0.1:@PORT@;
        location / {{
            proxy_wasm grpc_call "config=check_service 500";
            proxy_pass http://@UPSTREAM@;
        }}
        location /nowhere {{
            proxy_wasm grpc_call config=no_such_service;
            proxy_pass http://@UPSTREAM@;
        }}
    }}
""", workers=2)
    r = nginx.request("/api?x=1", headers={"authorization": "Bearer good"})
    assert r.status == 200 and r.body == b"upstream ok\n"
    assert upstream.header_values("x-check-reason") == ["user 42"]
    assert seen[-1] == ("GET", "/api?x=1", "Bearer good")
    r = nginx.request("/api", headers={"authorization": "Bearer bad"})
    assert (r.status, r.body) == (403, b"denied: bad token\n")
    r = nginx.request("/api")
    assert (r.status, r.body) == (403, b"denied: bad token\n")
    assert seen[-1] == ("GET", "/api", "")
    r = nginx.request("/broken", headers={"authorization": "Bearer good"})
    assert (r.status, r.body) == (503, b"check failed: 14 backend down\n")
    r = nginx.request("/slow", headers={"authorization": "Bearer good"})
    assert r.status == 503 and r.body.startswith(b"check failed: 4 "), r.body
    r = nginx.request("/nowhere")
    assert (r.status, r.body) == (503, b"check failed: no such target\n")
    assert len(upstream.requests) == 1
    clean_log(nginx)


def test_a_hostname_target_resolved_with_the_resolver(nginx, server):
    # http{}'s resolver against tests/nginx/dnsserver.py, as for HTTP
    # callouts: grpc.pwasm.test -> 127.0.0.1, anything else NXDOMAIN
    dns = DnsServer({"grpc.pwasm.test": "127.0.0.1"})
    try:
        target = f"grpc.pwasm.test:{server.port}"
        start(nginx, server, target=target,
              extra=f"resolver 127.0.0.1:{dns.port} valid=30s;\n"
                    f"    resolver_timeout 1s;\n"
                    f"    proxy_wasm_callout_allow grpc_client {target} "
                    f"nx.pwasm.test:{server.port};")
        lines = call(nginx, "unary", text="named")
        assert "msg named" in lines and lines[-1] == "close 0 0 ", lines
        # again: from the resolver's cache
        lines = call(nginx, "unary", text="cached")
        assert "msg cached" in lines and lines[-1] == "close 0 0 ", lines
        assert dns.names_asked() == ["grpc.pwasm.test"]
        # a name that does not resolve: UNAVAILABLE
        lines = call(nginx, "unary", text="x", target=f"nx.pwasm.test:{server.port}")
        assert re.fullmatch(r"close 14 14 .*", lines[-1]), lines
        assert [c[1] for c in server.calls] == ["named", "cached"]
        clean_log(nginx)
    finally:
        dns.close()


def test_a_message_just_over_the_size_limit(nginx, server):
    # Msg{text: N x "x"} is 4 + N bytes (tag, 3-byte length) for N >= 16384
    start(nginx, server, extra="proxy_wasm_grpc_max_message_size 200k;")
    lines = call(nginx, "big", text=204800 - 4)
    assert "msg len=204796" in lines and lines[-1] == "close 0 0 ", lines
    lines = call(nginx, "big", text=204800 - 3)
    assert not any(l.startswith("msg") for l in lines)
    assert re.fullmatch(r"close 8 8 .*proxy_wasm_grpc_max_message_size.*", lines[-1]), lines
    clean_log(nginx)
