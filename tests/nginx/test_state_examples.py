"""The examples that keep state across requests and workers, in nginx with
two workers: examples/c/shared_counter (shared data with CAS, a metric)
and examples/c/token_refresh (ticks, shared data, a queue), as their
READMEs configure them."""

import http.client
import re
import time
from concurrent.futures import ThreadPoolExecutor

COUNTER = """
    proxy_wasm_module counter @WASM:examples/shared_counter.wasm@ vm_id=counter;
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm counter config=writer;
            proxy_wasm counter config=reader;
            add_header x-pid $pid always;
            proxy_pass http://@UPSTREAM@;
        }
        location = /metrics { proxy_wasm_metrics; }
    }
"""


def test_shared_counter_counts_every_request_of_both_workers(nginx):
    nginx.start(COUNTER, workers=2)
    n = 120
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: nginx.request("/"), range(n)))
    assert all(r.status == 200 for r in responses)
    assert len({r.header("x-pid") for r in responses}) == 2
    counts = [int(r.header("x-count")) for r in responses]
    assert max(counts) == n and min(counts) >= 1
    assert int(nginx.request("/").header("x-count")) == n + 1
    metrics = nginx.request("/metrics").body.decode()
    assert re.search(rf"^shared_counter_requests_total {n + 1}$", metrics, re.M), metrics


COUNTER_LOCAL = """
    proxy_wasm_module counter @WASM:examples/shared_counter.wasm@ vm_id=counter;
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm counter config=writer;
            proxy_wasm counter config=reader;
            add_header x-pid $pid always;
            return 200 "ok\\n";
        }
        location = /metrics { proxy_wasm_metrics; }
    }
"""


def test_twenty_thousand_requests_count_exactly_and_never_go_back(nginx):
    """The issue's scenario at its scale: 20,000 requests on 32 keep-alive
    connections spread over two workers. The counter ends at exactly
    20,000, and what the reader shows on one connection only goes up (each
    request's own increment comes before its read)."""
    nginx.start(COUNTER_LOCAL, workers=2)
    n, conns = 20000, 32

    def client(_):
        c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
        seen, pids = [], set()
        for _ in range(n // conns):
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            assert r.status == 200
            seen.append(int(r.getheader("x-count")))
            pids.add(r.getheader("x-pid"))
        c.close()
        return seen, pids

    with ThreadPoolExecutor(conns) as pool:
        results = list(pool.map(client, range(conns)))
    assert len(set().union(*(p for _, p in results))) == 2, "both workers must take part"
    for seen, _ in results:
        assert all(a < b for a, b in zip(seen, seen[1:])), seen
    assert max(max(seen) for seen, _ in results) == n
    assert int(nginx.request("/").header("x-count")) == n + 1
    metrics = nginx.request("/metrics").body.decode()
    assert re.search(rf"^shared_counter_requests_total {n + 1}$", metrics, re.M), metrics


TOKENS = """
    proxy_wasm_module tokens @WASM:examples/token_refresh.wasm@ vm_id=tokens;
    proxy_wasm_service tokens "config=refresher 200";
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm tokens config=filter;
            proxy_pass http://@UPSTREAM@;
        }
        location = /metrics { proxy_wasm_metrics; }
    }
"""


def renewals(nginx):
    m = re.search(r"^token_refresh_renewals_total (\d+)$",
                  nginx.request("/metrics").body.decode(), re.M)
    return int(m.group(1)) if m else 0


def test_token_refresh_renews_once_per_period_for_all_workers(nginx, upstream):
    nginx.start(TOKENS, workers=2)
    assert nginx.wait_log(r"token_refresh: renewed: tok-1", timeout=10), nginx.log()
    r = nginx.request("/")
    assert r.status == 200
    first = upstream.header_values("authorization")
    assert len(first) == 1 and first[0].startswith("Bearer tok-")
    t0, before = time.time(), renewals(nginx)
    time.sleep(2.0)
    done = renewals(nginx) - before
    elapsed = time.time() - t0
    # both workers tick every 200 ms; the CAS on the period lets one renew
    assert 0.4 * elapsed / 0.2 <= done <= elapsed / 0.2 + 2, (done, elapsed)
    nginx.request("/")
    assert upstream.header_values("authorization") != first
    # announced on the queue: heard in one worker, the last to register
    heard = re.findall(r"(\d+)#\d+: .*token_refresh: root \d+ heard of tok-\d+", nginx.log())
    assert heard and len(set(heard)) == 1, heard
