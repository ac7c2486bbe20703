"""Limits on what a plugin can make nginx do (docs/ENGINE.md "Limits"),
with filter.wasm (rules in the x-pw request header, see its header
comment): hostcalls over a limit answer BadArgument and the request goes
on, a client never gets a response split by a 1xx status, the worker's
memory and the error log stay bounded, and a plugin cannot forge log
lines."""

import os
import re
import socket
import time

import pytest

from conftest import children, rss_kb

FILTER = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def raw_get(nginx, rules):
    """GET / with x-pw: rules over a plain socket; every byte nginx sent
    until it closed the connection."""
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=30) as s:
        s.sendall(("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   f"x-pw: {rules}\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def assert_one_upstream_response(data):
    """The upstream's 200, whole, and nothing else on the connection."""
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200]
    assert len(re.findall(rb"HTTP/1\.[01] \d", data)) == 1, data
    head, _, body = data.partition(b"\r\n\r\n")
    if re.search(rb"(?im)^transfer-encoding: chunked", head):
        chunks, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                assert rest == b"\r\n", data  # nothing after the last chunk
                break
            chunks, rest = chunks + rest[:n], rest[n + 2:]
        body = chunks
    assert body == b"upstream ok\n", data


def action_status(nginx, action):
    """The status filter.wasm logged for `action` (e.g. "reqh.local=100")."""
    m = nginx.wait_log(r"filter: action %s (\d+)" % re.escape(action))
    assert m, nginx.log()[-3000:]
    return int(m.group(1))


@pytest.mark.parametrize("code", [100, 101, 199, 600])
def test_local_response_outside_200_599_is_refused(nginx, code):
    nginx.start(FILTER)
    data = raw_get(nginx, f"reqh.local={code}")
    assert_one_upstream_response(data)
    assert action_status(nginx, f"reqh.local={code}") == 2  # BadArgument
    assert nginx.wait_log(r"\[warn\] .*\[pwasm\] filter: plugin \"filter\": refused "
                          r"proxy_send_local_response: status %d \(200\.\.599 only\)" % code)


def test_local_response_204_with_a_body_is_refused(nginx):
    nginx.start(FILTER)
    data = raw_get(nginx, "reqh.local=204")  # filter.wasm always sends a body
    assert_one_upstream_response(data)
    assert action_status(nginx, "reqh.local=204") == 2


def test_status_100_is_refused(nginx):
    nginx.start(FILTER)
    data = raw_get(nginx, "resph.header=:status:100")
    assert_one_upstream_response(data)
    assert action_status(nginx, "resph.header=:status:100") == 2
    # a status in range still works
    r = nginx.request("/", headers={"x-pw": "resph.header=:status:299"})
    assert r.status == 299 and r.body == b"upstream ok\n"


def worker_rss_kb(nginx):
    """VmRSS of nginx's (only) worker process, in kB."""
    for pid in children(nginx.proc.pid):
        kb = rss_kb(pid)
        if kb is not None:
            return kb
    pytest.fail("no nginx worker")


def test_huge_header_values_are_refused_and_memory_stays_bounded(nginx):
    nginx.start(FILTER)
    assert nginx.request("/").status == 200
    before = worker_rss_kb(nginx)
    # 200 replacements with a 10 MB value, then one with a small value
    for _ in range(3):
        r = nginx.request("/", headers={
            "x-pw": "reqh.bighdr=200,10485760 reqh.header=x-big:small"})
        assert r.status == 200 and r.body == b"upstream ok\n"
    grown = worker_rss_kb(nginx) - before
    assert grown < 100 * 1024, f"worker RSS grew by {grown} kB"
    assert nginx.wait_log(r"filter: bighdr ok=0 bad=200"), nginx.log()[-3000:]
    assert nginx.upstream.header_values("x-big") == ["small"]
    # a 1 MB header name
    r = nginx.request("/", headers={"x-pw": "reqh.bigname=1048576"})
    assert r.status == 200 and r.body == b"upstream ok\n"
    assert action_status(nginx, "reqh.bigname=1048576") == 2
    # values under the limit: the per-callback budget (32 MiB) stops them
    # (60000 bytes: the Python upstream takes header lines up to 64 KiB)
    r = nginx.request("/", headers={"x-pw": "reqh.bighdr=1000,60000"})
    assert r.status == 200
    assert nginx.wait_log(r"filter: bighdr ok=559 bad=441"), nginx.log()[-3000:]
    # and nginx goes on serving
    assert nginx.request("/").body == b"upstream ok\n"
    grown = worker_rss_kb(nginx) - before
    assert grown < 100 * 1024, f"worker RSS grew by {grown} kB"


def test_log_flood_is_rate_limited(nginx):
    nginx.start(FILTER)
    size = os.path.getsize(nginx.error_log)
    r = nginx.request("/", headers={"x-pw": "reqh.flood=100000"})
    assert r.status == 200
    assert nginx.wait_log(r"\[warn\] .*\[pwasm\] filter: plugin \"filter\": log rate limit "
                          r"reached \(10000 lines or 1048576 bytes per second\), dropping lines")
    log = nginx.log()
    lines = len(re.findall(r"filter: flood \d+", log))
    assert 0 < lines <= 20000, lines  # the flood may straddle two seconds
    # 100,000 lines of ~200 bytes would be ~20 MB
    assert os.path.getsize(nginx.error_log) - size < 5 * 1024 * 1024
    # the count is logged with the plugin's first line of a later second
    time.sleep(1.1)
    nginx.request("/")  # filter.wasm logs a line per callback
    assert nginx.wait_log(r"\[pwasm\] filter: plugin \"filter\": log rate limit: \d+ lines "
                          r"dropped"), nginx.log()[-3000:]


def test_plugin_cannot_forge_log_lines(nginx):
    nginx.start(FILTER)
    assert nginx.request("/", headers={"x-pw": "reqh.forge"}).status == 200
    assert nginx.wait_log(r"\[info\] .*\[pwasm\] filter: forged\\n2024/01/01 00:00:00 "
                          r"\[emerg\] 1#1: fake\\r\\x00end, client: "), nginx.log()[-3000:]
    assert not re.search(r"^2024/01/01", nginx.log(), re.M), nginx.log()[-3000:]
    assert "[emerg]" not in nginx.log().replace("\\n2024/01/01 00:00:00 [emerg]", "")
