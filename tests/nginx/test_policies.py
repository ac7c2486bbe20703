"""Policies and limits: the crash-loop brake, a chain element's own
failure_policy= (http and stream), and the limits of proxy_wasm_module
(docs/DIRECTIVES.md "Limits", "Failures and traps")."""

import re
import socket
import time

from test_metrics import scrape
from conftest import free_port
from test_stream import HTTP, Echo, read_all, start as stream_start

BRAKE = """
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@ @LIMITS@;
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm trap;
            proxy_wasm add_header config=x-after=trap;
            proxy_pass http://@UPSTREAM@;
        }
        location /metrics { proxy_wasm_metrics; }
    }
"""


def brake_metrics(nginx):
    _, samples = scrape(nginx)
    return (samples.get(("pwasm_brake_trips_total", (("module", "trap"),))),
            samples.get(("pwasm_brake_out", (("module", "trap"),))))


def test_brake_takes_a_crash_looping_plugin_out_then_back(nginx, upstream):
    nginx.start(BRAKE.replace("@LIMITS@", "brake=3/10s brake_backoff=1s/4s"))
    for _ in range(3):
        assert nginx.request("/", headers={"x-trap": "unreachable"}).status == 503
    line = nginx.wait_log(r"\[error\].*is taken out after 3 traps in 10 s; retry in 1 s.*")
    assert line, nginx.log()
    assert brake_metrics(nginx) == (1, 1)

    # out: the policy (closed) answers without calling the plugin, even
    # for a request that would not trap
    traps_before = nginx.log().count("trap: unreachable")
    r = nginx.request("/")
    assert r.status == 503
    assert upstream.requests == []
    m = nginx.wait_log(r"proxy_wasm \"trap\" failed in on_request_headers: plugin \"trap\" "
                       r"is taken out after 3 traps in 10 s; retry in \d+ ms; answering 503")
    assert m, nginx.log()
    assert nginx.log().count("trap: unreachable") == traps_before
    # the trip is logged once, not once per request
    assert len(re.findall(r"crash-loop brake: its failure policy", nginx.log())) == 1

    # after the back-off a fresh VM runs the plugin again
    time.sleep(1.1)
    r = nginx.request("/")
    assert r.status == 200, nginx.log()
    assert r.header_values("x-after") == ["trap"]
    assert nginx.wait_log(r"\[warn\].*back-off of 1 s is over: rebuilding its VM")
    assert brake_metrics(nginx) == (1, 0)

    # three more traps soon after: out again, for twice as long
    for _ in range(3):
        assert nginx.request("/", headers={"x-trap": "unreachable"}).status == 503
    assert nginx.wait_log(r"is taken out after 3 traps in 10 s; retry in 2 s"), nginx.log()
    time.sleep(1.1)
    assert nginx.request("/").status == 503
    time.sleep(1.0)
    assert nginx.request("/").status == 200
    assert brake_metrics(nginx) == (2, 0)
    assert nginx.proc.poll() is None


def test_brake_off_rebuilds_at_every_request(nginx, upstream):
    nginx.start(BRAKE.replace("@LIMITS@", "brake=off"))
    for _ in range(8):
        assert nginx.request("/", headers={"x-trap": "unreachable"}).status == 503
    assert nginx.request("/").status == 200
    assert "taken out" not in nginx.log()


POLICY = """
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@;
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm_failure_policy @CHAIN@;
            proxy_wasm trap @OWN@;
            proxy_wasm add_header config=x-after=trap;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_own_failure_policy_open_in_a_closed_chain(nginx, upstream):
    nginx.start(POLICY.replace("@CHAIN@", "closed").replace("@OWN@", "failure_policy=open"))
    r = nginx.request("/", headers={"x-trap": "unreachable"})
    assert r.status == 200, nginx.log()
    assert r.body == b"upstream ok\n"
    assert r.header_values("x-after") == ["trap"]  # the next element still ran
    assert nginx.wait_log(r"proxy_wasm \"trap\" failed in on_request_headers: .*"
                          r"continuing without it \(failure policy open\)"), nginx.log()


def test_own_failure_policy_closed_in_an_open_chain(nginx, upstream):
    nginx.start(POLICY.replace("@CHAIN@", "open").replace("@OWN@", "failure_policy=closed"))
    r = nginx.request("/", headers={"x-trap": "unreachable"})
    assert r.status == 503
    assert upstream.requests == []
    assert nginx.wait_log(r"answering 503 \(failure policy closed\)"), nginx.log()


def test_stream_own_failure_policy(nginx):
    echo = Echo()
    try:
        port = stream_start(nginx, f"127.0.0.1:{echo.port}", None,
                            extra="        proxy_wasm_failure_policy closed;",
                            chain='        proxy_wasm tcp config=trap failure_policy=open;')
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"trap\n")
            assert s.recv(100) == b"trap\n"
            s.sendall(b"more\n")
            assert s.recv(100) == b"more\n"
        assert nginx.wait_log(r"proxy_wasm \"tcp\" failed in on_downstream_data: .*"
                              r"failure policy open"), nginx.log()
    finally:
        echo.close()


def test_stream_brake_closes_connections_while_out(nginx):
    echo = Echo()
    try:
        port = free_port()
        nginx.start(HTTP, stream=f"""
    proxy_wasm_module tcp @WASM:tests/nginx/plugins/tcp_stream.wasm@
        brake=2/10s brake_backoff=5s;
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm tcp config=trap;
        proxy_pass 127.0.0.1:{echo.port};
    }}
""")
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"trap\n")
                assert read_all(s) == b""
        assert nginx.wait_log(r"taken out after 2 traps in 10 s; retry in 5 s"), nginx.log()
        # out: a connection that would not trap is closed by the policy
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"hello\n")
            assert read_all(s) == b""
        assert nginx.wait_log(r"proxy_wasm \"tcp\" failed in \w+: plugin \"tcp\" is taken out "
                              r".*closing the connection"), nginx.log()
    finally:
        echo.close()


def test_limit_parameters_are_checked(nginx):
    for bad, msg in [
        ("brake=0/10s", r'invalid value "0/10s" of "brake="'),
        ("brake=5", r'invalid value "5" of "brake="'),
        ("brake_backoff=2s/1s", r'invalid value "2s/1s" of "brake_backoff="'),
        ("max_memory=1k", r'invalid value "1k" of "max_memory="'),
        ("max_call_time=soon", r'invalid value "soon" of "max_call_time="'),
        ("max_callouts=0", r'invalid value "0" of "max_callouts="'),
        ("max_map_pairs=many", r'invalid value "many" of "max_map_pairs="'),
        ("max_map_bytes=0", r'invalid value "0" of "max_map_bytes="'),
        ("max_buffer=5g", r'invalid value "5g" of "max_buffer="'),
    ]:
        rc, err = nginx.test_config(f"""
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@ {bad};
    server {{ listen 127.0.0.1:@PORT@; location / {{ proxy_wasm trap; }} }}
""")
        assert rc != 0, bad
        assert re.search(msg, err), err
    rc, err = nginx.test_config("""
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@;
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm trap failure_policy=maybe; } }
""")
    assert rc != 0
    assert re.search(r'invalid value "maybe" of "failure_policy=" \(open or closed\)', err), err
    rc, err = nginx.test_config("""
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@ max_memory=2m max_call_time=off
        brake=10/1m brake_backoff=500ms/30s max_callback_bytes=1m max_header_value=4k
        max_callouts=16 max_map_pairs=off max_map_bytes=64k max_buffer=off;
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm trap failure_policy=open; } }
""")
    assert rc == 0, err


def test_max_memory_refuses_a_module_that_needs_more(nginx):
    """A module whose initial memory is over max_memory= cannot start:
    nginx -t says so."""
    rc, err = nginx.test_config("""
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@ max_memory=64k;
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm trap; } }
""")
    assert rc != 0
    assert re.search(r'proxy_wasm_module "trap": cannot start: .*', err), err


def test_a_rebuild_that_fails_to_start_follows_the_policy_and_the_brake(nginx, upstream):
    """A VM rebuilt in a worker whose proxy_on_configure refuses: each
    request meets the failure policy with the reason, each failed rebuild
    counts toward the brake, which then takes the plugin out."""
    nginx.start("""
    proxy_wasm_module store @WASM:tests/nginx/plugins/store.wasm@ brake=3/10s;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm store config=refuse_if=refuse;
            proxy_pass http://@UPSTREAM@;
        }
        location /metrics { proxy_wasm_metrics; }
    }
""")
    assert nginx.request("/").status == 200  # started (nginx -t passed too)
    r = nginx.request("/", headers={"x-store": "set refuse 1 0"})
    assert r.status == 200 and r.body == b"set 0\n", r.body
    # a trap: the VM is discarded (failure 1)
    assert nginx.request("/", headers={"x-store": "trap"}).status == 503
    # the rebuilds refuse their configuration (failures 2 and 3)
    for _ in range(2):
        assert nginx.request("/").status == 503
    m = nginx.wait_log(r"proxy_wasm \"store\" failed in on_request_headers: no stream context: "
                       r"plugin \"store\": proxy_on_configure returned false.*answering 503")
    assert m, nginx.log()
    assert nginx.wait_log(r"is taken out after 3 traps in 10 s"), nginx.log()
    # out: no more rebuilds
    refusals = nginx.log().count("refusing the configuration")
    assert refusals == 2, nginx.log()
    assert nginx.request("/").status == 503
    assert nginx.log().count("refusing the configuration") == refusals
    assert len(upstream.requests) == 1  # the first request only
    _, samples = scrape(nginx)
    assert samples[("pwasm_brake_trips_total", (("module", "store"),))] == 1


HANDOVER = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@ @LIMITS@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
        location /metrics { proxy_wasm_metrics; }
    }
"""


def limit_hits(nginx, limit):
    _, samples = scrape(nginx)
    return samples.get(("pwasm_limit_hits_total", (("limit", limit), ("plugin", "filter"))))


def test_max_map_pairs_refuses_a_large_header_map(nginx, upstream):
    """A request with more headers than max_map_pairs=: the plugin's
    proxy_get_header_map_pairs answers BadArgument (logged once, counted),
    its single-header reads still work, the request goes on whole."""
    nginx.start(HANDOVER.replace("@LIMITS@", "max_map_pairs=12"))
    many = {f"x-h{i}": str(i) for i in range(12)}
    r = nginx.request("/", headers={"x-pw": "reqh.headers", **many})
    assert r.status == 200, nginx.log()
    assert nginx.wait_log(r"filter: map 0 2, "), nginx.log()
    assert nginx.wait_log(r"\[warn\].*plugin \"filter\": refused proxy_get_header_map_pairs: "
                          r"a map of 1\d pairs \(limit 12\)"), nginx.log()
    # once: the x-pw rules, read with proxy_get_header_map_value, asked
    # for the map in on_request_headers only
    assert nginx.log().count("refused proxy_get_header_map_pairs") == 1
    assert {k: v for k, v in upstream.headers(0) if k.startswith("x-h")} == many
    r = nginx.request("/", headers={"x-pw": "reqh.headers"})
    assert r.status == 200
    assert nginx.wait_log(r"filter: map 0 0 :method=GET .* x-pw=reqh.headers, "), nginx.log()
    assert limit_hits(nginx, "map_pairs") == 1
    assert nginx.proc.poll() is None


def test_max_map_bytes_refuses_a_large_map_and_value(nginx, upstream):
    """A header of 3000 bytes over max_map_bytes=2k: the map and that
    header's value are refused with BadArgument, other headers are read."""
    nginx.start(HANDOVER.replace("@LIMITS@", "max_map_bytes=2k"))
    r = nginx.request("/", headers={"x-pw": "reqh.headers", "x-big": "b" * 3000})
    assert r.status == 200, nginx.log()
    assert nginx.wait_log(r"filter: map 0 2, "), nginx.log()
    assert nginx.wait_log(r"refused proxy_get_header_map_pairs: a map of \d+ bytes "
                          r"\(limit 2048\)"), nginx.log()
    assert upstream.headers(0).count(("x-big", "b" * 3000)) == 1
    # a value alone over the limit: the x-pw rules the plugin reads with
    # proxy_get_header_map_value are refused, so none of them runs
    r = nginx.request("/", headers={"x-pw": "reqh.headers reqh." + "x" * 2100})
    assert r.status == 200
    assert nginx.wait_log(r"refused proxy_get_header_map_value: a value of 2118 bytes "
                          r"\(limit 2048\)"), nginx.log()
    assert "unknown action" not in nginx.log()
    # the map, then the value read in each callback: reqh, resph, respb, log
    assert limit_hits(nginx, "map_bytes") == 5
    assert nginx.proc.poll() is None


def test_max_buffer_cuts_what_get_buffer_bytes_hands_over(nginx, upstream):
    """A 5000-byte body with max_buffer=1k: the plugin reads 1024 bytes
    (Ok), the upstream still gets the whole body."""
    nginx.start(HANDOVER.replace("@LIMITS@", "max_buffer=1k"))
    body = bytes(range(32, 127)) * 60
    r = nginx.request("/echo", method="POST", body=body[:5000],
                      headers={"x-pw": "reqb.buffer reqb.body"})
    assert r.status == 200, nginx.log()
    assert r.body == body[:5000]
    assert nginx.wait_log(r"filter: body reqb ctx=\d+ status=0 size=1024 "), nginx.log()
    assert nginx.wait_log(r"\[warn\].*refused proxy_get_buffer_bytes: 5000 bytes of buffer 0 "
                          r"\(limit 1024; that many handed over, Ok\)"), nginx.log()
    assert limit_hits(nginx, "buffer_bytes") == 1
