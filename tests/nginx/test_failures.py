"""Traps answer 503 (fail closed), nginx keeps serving, the VM recovers."""

import http.client
import re

import pytest

TRAP = """
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@;
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            @POLICY@
            proxy_wasm trap;
            proxy_wasm add_header config=x-after=trap;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


# What the error log says for each kind of trap trap.wasm can do.
REASONS = {
    "unreachable": r"unreachable",
    "oob": r"out.of.bounds",
    "stack": r"stack",
    "div": r"divi(de|sion) by zero",
    "exit": r"proc_exit\(3\)",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_trap_in_request_headers_answers_503_then_recovers(nginx, upstream, kind):
    nginx.start(TRAP.replace("@POLICY@", ""))
    r = nginx.request("/", headers={"x-trap": kind})
    assert r.status == 503
    assert b"503 Service Temporarily Unavailable" in r.body
    assert upstream.requests == [], "a failed request must not reach the upstream"

    # the error log names the plugin and the trap, at error level
    line = nginx.wait_log(r"\[error\].*proxy_wasm \"trap\" failed in on_request_headers: .*")
    assert line, nginx.log()
    assert "trapped in proxy_on_request_headers" in line.group(0)
    assert re.search(REASONS[kind], line.group(0), re.I), line.group(0)
    assert "answering 503" in line.group(0)

    # the next request works: the VM was rebuilt
    r = nginx.request("/")
    assert r.status == 200
    assert r.body == b"upstream ok\n"
    assert r.header_values("x-after") == ["trap"]

    # and so does the next trap, and the next request again
    assert nginx.request("/", headers={"x-trap": kind}).status == 503
    assert nginx.request("/").status == 200
    assert nginx.proc.poll() is None


@pytest.mark.parametrize("limit,least,most", [("", 0.9, 10),
                                               (" max_call_time=200ms", 0.15, 0.8)])
def test_looping_plugin_is_interrupted_and_nginx_keeps_serving(nginx, upstream, limit, least,
                                                                most):
    """A plugin in an infinite loop is stopped after the CPU time limit
    (1000 ms by default, or the module's max_call_time=) and answered like
    a trap; the worker keeps serving other requests afterwards, through a
    rebuilt VM."""
    import time
    nginx.start("""
    proxy_wasm_module loop @WASM:tests/plugins/loop.wasm@@LIMIT@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm loop; proxy_pass http://@UPSTREAM@; }
    }
""".replace("@LIMIT@", limit))
    started = time.monotonic()
    r = nginx.request("/", headers={"x-loop": "1"})
    took = time.monotonic() - started
    assert r.status == 503
    assert least <= took < most, took
    assert upstream.requests == []
    line = nginx.wait_log(r"\[error\].*proxy_wasm \"loop\" failed in on_request_headers: .*")
    assert line, nginx.log()
    assert "CPU time limit exceeded" in line.group(0)
    r = nginx.request("/")
    assert r.status == 200 and r.body == b"upstream ok\n"
    assert nginx.proc.poll() is None


def test_trap_in_response_headers_replaces_the_response(nginx, upstream):
    nginx.start(TRAP.replace("@POLICY@", ""))
    r = nginx.request("/", headers={"x-trap-response": "unreachable"})
    assert r.status == 503
    assert b"503 Service Temporarily Unavailable" in r.body
    assert b"upstream ok" not in r.body
    assert r.header("x-upstream") is None
    assert r.header_values("x-after") == []
    assert len(upstream.requests) == 1
    assert nginx.wait_log(r"\[error\].*proxy_wasm \"trap\" failed in on_response_headers")
    r = nginx.request("/")
    assert (r.status, r.body) == (200, b"upstream ok\n")


def test_failure_policy_open_skips_the_plugin(nginx, upstream):
    nginx.start(TRAP.replace("@POLICY@", "proxy_wasm_failure_policy open;"))
    r = nginx.request("/", headers={"x-trap": "unreachable"})
    assert r.status == 200
    assert r.body == b"upstream ok\n"
    assert r.header_values("x-after") == ["trap"]
    assert nginx.wait_log(r"\[error\].*proxy_wasm \"trap\" failed in on_request_headers: "
                          r".*continuing without it")


def test_response_replacement_drops_a_large_upstream_body(nginx, upstream):
    nginx.start(TRAP.replace("@POLICY@", ""))
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        # the upstream's 4 MB body is discarded, the 503 page replaces it,
        # and the connection stays usable
        conn.request("GET", "/?size=4000000", headers={"x-trap-response": "oob"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 503
        assert b"503 Service Temporarily Unavailable" in body and len(body) < 1000
        assert resp.getheader("content-length") == str(len(body))
        conn.request("GET", "/?size=300000")
        resp = conn.getresponse()
        assert (resp.status, len(resp.read())) == (200, 300000)
    finally:
        conn.close()
