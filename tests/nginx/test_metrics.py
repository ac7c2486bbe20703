"""proxy_wasm_metrics: the metrics plugins define, summed across the
workers, in the Prometheus text format, read with Debian's
prometheus_client parser (python3-prometheus-client)."""

import re
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.parser import text_string_to_metric_families

from test_shared import conf, store


def scrape(nginx, path="/metrics"):
    r = nginx.request(path)
    assert r.status == 200, r.body
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    text = r.body.decode()
    assert text == "" or text.endswith("\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for f in families.values():
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def test_metrics_of_both_workers(nginx):
    nginx.start(conf(), workers=2)
    values = [1, 3, 7, 30, 120, 700, 2000, 9, 45, 400] * 8
    results = []

    def one(i):
        return store(nginx, f"counter requests_total 1;counter bytes.sent 10;hist latency_ms {values[i]}")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(len(values))))
    assert len({pid for _, pid in results}) == 2, "both workers must take part"
    for lines, _ in results:
        assert lines == [["counter", "0"], ["counter", "0"], ["hist", "0"]]
    assert store(nginx, "gauge queue_depth 42")[0] == [["gauge", "0"]]

    families, samples = scrape(nginx)
    n = len(values)
    assert families["requests"].type == "counter"
    assert samples[("requests_total", ())] == n
    # names are made valid: '.' becomes '_' (the parser gives a counter's
    # sample the "_total" suffix of OpenMetrics)
    assert families["bytes_sent"].type == "counter"
    assert samples[("bytes_sent_total", ())] == 10 * n
    assert families["queue_depth"].type == "gauge"
    assert samples[("queue_depth", ())] == 42
    assert families["latency_ms"].type == "histogram"
    assert samples[("latency_ms_count", ())] == n
    assert samples[("latency_ms_sum", ())] == sum(values)
    for le in ["0.5", "1", "5", "10", "100", "1000", "2500", "3600000", "+Inf"]:
        bound = float("inf") if le == "+Inf" else float(le)
        assert samples[("latency_ms_bucket", (("le", le),))] == sum(
            1 for v in values if v <= bound), le

    # the host's own figures come along, under pwasm_
    assert samples[("pwasm_streams_total", (("plugin", "store"),))] >= n


def test_get_metric_sums_the_workers(nginx):
    nginx.start(conf(), workers=2)
    pids = set()
    for _ in range(40):
        lines, pid = store(nginx, "counter summed_total 1")
        assert lines == [["counter", "0"]]
        pids.add(pid)
    assert len(pids) == 2
    assert store(nginx, "gauge level 42")[0] == [["gauge", "0"]]
    # what plugins read (proxy_get_metric) is what the endpoint shows
    assert scrape(nginx)[1][("summed_total", ())] == 40
    lines, _ = store(nginx, "mget 0 summed_total;mget 1 level")
    assert lines == [["mget", "0", "40"], ["mget", "0", "42"]]


def test_labels_in_metric_names(nginx):
    nginx.start(conf(), workers=2)
    for code, n in (("200", 5), ("503", 2)):
        for _ in range(n):
            assert store(nginx, f'counter responses_total{{code="{code}"}} 1')[0] == [
                ["counter", "0"]]
    families, samples = scrape(nginx)
    assert families["responses"].type == "counter"  # one family, one TYPE line
    assert samples[("responses_total", (("code", "200"),))] == 5
    assert samples[("responses_total", (("code", "503"),))] == 2


def test_store_figures(nginx):
    nginx.start(conf("proxy_wasm_shm 128k eviction=none;"), workers=2)
    lines, _ = store(nginx, "fill k 100 4000")
    refused = int(lines[0][2].split("=")[1])
    assert refused > 0
    _, samples = scrape(nginx)
    assert samples[("pwasm_shared_data_refused_total", (("reason", "full"),))] == refused
    assert samples[("pwasm_shared_data_refused_total", (("reason", "quota"),))] == 0
    assert samples[("pwasm_shared_data_keys", ())] == 100 - refused
    assert samples[("pwasm_shared_data_bytes", ())] >= 4000 * (100 - refused)


def test_metrics_survive_reload(nginx):
    nginx.start(conf(), workers=2)
    for _ in range(6):
        store(nginx, "counter kept_total 2")
    assert scrape(nginx)[1][("kept_total", ())] == 12
    assert nginx.reload(conf(), workers=2), nginx.log()
    assert scrape(nginx)[1][("kept_total", ())] == 12
    store(nginx, "counter kept_total 1")
    assert scrape(nginx)[1][("kept_total", ())] == 13


def test_metrics_survive_reloads_to_fewer_and_more_workers(nginx):
    nginx.start(conf(), workers=2)
    for _ in range(9):
        store(nginx, "counter kept_total 1")
    assert nginx.reload(conf(), workers=1), nginx.log()
    assert scrape(nginx)[1][("kept_total", ())] == 9
    assert nginx.reload(conf(), workers=4), nginx.log()
    assert scrape(nginx)[1][("kept_total", ())] == 9
    # four workers on a store made for two: the third and fourth share a
    # slot; every increment counts
    pids = set()
    for _ in range(40):
        lines, pid = store(nginx, "counter kept_total 1")
        assert lines == [["counter", "0"]]
        pids.add(pid)
    assert len(pids) >= 3, pids
    assert scrape(nginx)[1][("kept_total", ())] == 49
    assert "[alert]" not in nginx.log()


def test_methods_and_an_empty_store(nginx):
    nginx.start("""
    server {
        listen 127.0.0.1:@PORT@;
        location /metrics { proxy_wasm_metrics; }
    }
""")
    # no module: the zone exists for the endpoint; no plugin metric, the
    # host's own figures of the store only
    families, _ = scrape(nginx)
    assert all(name.startswith("pwasm_") for name in families), families
    assert nginx.request("/metrics", method="HEAD").status == 200
    assert nginx.request("/metrics", method="POST", body=b"x").status == 405


def test_configuration_errors(nginx):
    rc, err = nginx.test_config("""
    server {
        listen 127.0.0.1:@PORT@;
        location /m { proxy_pass http://@UPSTREAM@; proxy_wasm_metrics; }
    }
""")
    assert rc != 0
    assert re.search(r'"proxy_wasm_metrics" directive conflicts with another content handler',
                     err), err
    rc, err = nginx.test_config("""
    server {
        listen 127.0.0.1:@PORT@;
        location /m { proxy_wasm_metrics; proxy_wasm_metrics; }
    }
""")
    assert rc != 0
    assert '"proxy_wasm_metrics" directive is duplicate' in err, err
    rc, err = nginx.test_config("""
    proxy_wasm_metrics;
    server { listen 127.0.0.1:@PORT@; }
""")
    assert rc != 0
    assert '"proxy_wasm_metrics" directive is not allowed here' in err, err
