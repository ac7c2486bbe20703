"""One store for http{} and stream{}: plugins that declare the same vm_id in
both blocks share their shared data and queues, and the http
proxy_wasm_metrics endpoint shows the metrics of both.
tests/nginx/plugins/store.wasm answers the same commands as an HTTP filter
(its x-store header) and as a network filter (the bytes a client sends,
answered through an echo upstream); its log lines name the module of the
VM they come from ("[pwasm] hstore: ..." in http{}, "tstore" in
stream{})."""

import re
import time

import pytest

from conftest import free_port
from test_shared import store
from test_stream import Echo, exchange

PLUGIN = "@WASM:tests/nginx/plugins/store.wasm@"

HTTP = f"""
    proxy_wasm_module hstore {PLUGIN} vm_id=both;
    @SHM@
    server {{
        listen 127.0.0.1:@PORT@ reuseport;
        location / {{
            proxy_wasm hstore @CONFIG@;
            add_header x-pid $pid always;
            proxy_pass http://@UPSTREAM@;
        }}
        location /metrics {{
            proxy_wasm_metrics;
        }}
    }}
"""

# an http{} without plugins (the tests need one listening server)
HTTP_BARE = """
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200; }
    }
"""

STREAM = f"""
    proxy_wasm_module tstore {PLUGIN} vm_id=both;
    proxy_wasm_module other {PLUGIN} vm_id=other;
    @SHM@
    server {{
        listen 127.0.0.1:@TCP@ reuseport;
        proxy_wasm tstore @CONFIG@;
        proxy_half_close on;
        proxy_pass 127.0.0.1:@ECHO@;
    }}
    server {{
        listen 127.0.0.1:@OTHER@;
        proxy_wasm other;
        proxy_half_close on;
        proxy_pass 127.0.0.1:@ECHO@;
    }}
"""


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.close()


class Both:
    """nginx with store.wasm in http{} (HTTP) and stream{} (STREAM)."""

    def __init__(self, nginx, echo):
        self.nginx = nginx
        self.echo = echo
        self.tcp = free_port()
        self.other = free_port()

    def http(self, shm="", config=""):
        return HTTP.replace("@SHM@", shm).replace("@CONFIG@", config)

    def stream(self, shm="", config=""):
        return (STREAM.replace("@SHM@", shm).replace("@CONFIG@", config)
                .replace("@TCP@", str(self.tcp)).replace("@OTHER@", str(self.other))
                .replace("@ECHO@", str(self.echo.port)))

    def start(self, http_shm="", stream_shm="", http_config="", stream_config="", workers=1,
              http=None):
        self.nginx.start(self.http(http_shm, http_config) if http is None else http,
                         workers=workers, stream=self.stream(stream_shm, stream_config))
        return self

    def tcp_store(self, cmds, port=None):
        """Runs store.wasm commands in the stream{} plugin (vm_id "both";
        port=self.other: vm_id "other"): the answer lines split in words."""
        out = exchange(port or self.tcp, cmds.encode() + b"\n").decode()
        return [line.split(" ") for line in out.splitlines()]

    def http_store(self, cmds):
        return store(self.nginx, cmds)[0]


@pytest.fixture
def both(nginx, echo):
    return Both(nginx, echo)


def test_shared_data_across_http_and_stream(both):
    both.start()
    assert both.http_store("set k from-http 0") == [["set", "0"]]
    got = both.tcp_store("get k")
    assert got[0][:2] == ["get", "0"] and got[0][3] == "from-http"
    # the CAS is the store's: a write from stream{} with http's token works
    cas = got[0][2]
    assert both.tcp_store(f"set k from-tcp {cas};set t tcp-only 0") == [["set", "0"],
                                                                         ["set", "0"]]
    lines = both.http_store(f"get k;get t;set k stale {cas}")
    assert lines[0][3] == "from-tcp" and lines[1][3] == "tcp-only"
    assert lines[2] == ["set", "8"]  # CasMismatch: stream{} wrote since
    # a vm_id is a namespace in both blocks: another vm_id sees nothing
    assert both.tcp_store("get k", port=both.other)[0][:2] == ["get", "1"]  # NotFound
    log = both.nginx.log()
    assert "[alert]" not in log and "[emerg]" not in log and "[crit]" not in log


def wait_lines(nginx, pattern, n, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        got = re.findall(pattern, nginx.log())
        if len(got) >= n or time.time() > deadline:
            return got
        time.sleep(0.05)


def queue_round(both, owner, queue, enqueue, n):
    """Both workers' root contexts of module `owner` registered `queue`;
    `enqueue` (the other block's) puts n items: each reaches `owner`'s
    on_queue_ready, in order, and no VM of the other module."""
    assert both.nginx.wait_log(rf"(?s){owner}: store: registered {queue} 0 1"
                               rf".*{owner}: store: registered {queue} 0 1"), both.nginx.log()
    for i in range(n):
        assert enqueue(f"enq {queue} item{i}") == [["enq", "0"]]
    got = wait_lines(both.nginx, r"\[pwasm\] (\w+): store: queue_ready root=\d+ queue=1 0 (item\d+)",
                     n)
    assert got == [(owner, f"item{i}") for i in range(n)], both.nginx.log()


def test_a_stream_plugin_gets_the_items_http_enqueues(both):
    # the stream{} root contexts register "jobs" in vm_id "both"; the http
    # plugin, same vm_id and root_id, enqueues: only stream{}'s VM hears of it
    both.start(stream_config="config=queue=jobs", workers=2)
    queue_round(both, "tstore", "jobs", both.http_store, 20)
    assert both.http_store("deq jobs") == [["deq", "7", ""]]  # Empty: all taken


def test_an_http_plugin_gets_the_items_stream_enqueues(both):
    both.start(http_config="config=queue=hjobs", workers=2)
    queue_round(both, "hstore", "hjobs", both.tcp_store, 10)


def test_stream_metrics_on_the_http_endpoint(both):
    both.start(workers=2)
    assert both.tcp_store("counter tcp_bytes_total 3;gauge tcp_open 7") == [["counter", "0"],
                                                                            ["gauge", "0"]]
    assert both.http_store("counter tcp_bytes_total 2") == [["counter", "0"]]
    assert both.tcp_store("counter tcp_bytes_total 1") == [["counter", "0"]]
    text = both.nginx.request("/metrics").body.decode()
    assert "\ntcp_bytes_total 6\n" in "\n" + text, text
    assert "\ntcp_open 7\n" in "\n" + text, text
    # and a stream plugin reads the sum of both
    assert both.tcp_store("mget 0 tcp_bytes_total") == [["mget", "0", "6"]]


def test_proxy_wasm_shm_of_both_blocks_must_agree(both):
    for http_shm, stream_shm, error in [
        ("proxy_wasm_shm 1m;", "proxy_wasm_shm 2m;",
         r"proxy_wasm_shm: 1048576 bytes, eviction=lru in \S+nginx.conf:\d+, and 2097152 bytes, "
         r"eviction=lru in \S+nginx.conf:\d+: http\{\} and stream\{\} share one store"),
        ("proxy_wasm_shm 1m;", "proxy_wasm_shm 1m eviction=none;",
         r"proxy_wasm_shm: 1048576 bytes, eviction=lru in \S+:\d+, and 1048576 bytes, "
         r"eviction=none in \S+:\d+"),
        (" ".join(["proxy_wasm_shm_ttl 1s;"] * 9), " ".join(["proxy_wasm_shm_ttl 1s;"] * 8),
         r"proxy_wasm_shm_ttl: more than 16 rules in http\{\} and stream\{\} together"),
    ]:
        rc, err = both.nginx.test_config(both.http(http_shm), stream=both.stream(stream_shm))
        assert rc != 0, (http_shm, stream_shm)
        assert re.search(r"\[emerg\] \d+#\d+: " + error, err), err
    for http_shm, stream_shm in [("proxy_wasm_shm 1m;", "proxy_wasm_shm 1m;"),
                                 ("", "proxy_wasm_shm 1m eviction=none;"),
                                 ("proxy_wasm_shm 1m eviction=none;", "")]:
        rc, err = both.nginx.test_config(both.http(http_shm), stream=both.stream(stream_shm))
        assert rc == 0, err


def test_proxy_wasm_shm_of_stream_sizes_the_one_store(both):
    # given in stream{} only, it is the zone's: a small zone without
    # eviction refuses http's writes once full
    both.start(stream_shm="proxy_wasm_shm 256k eviction=none;")
    lines = both.http_store("fill k 512 4000")
    ok = int(lines[0][1].split("=")[1])
    assert 0 < ok < 512 and lines[0][2] == f"mismatch={512 - ok}", lines
    assert both.tcp_store(f"count k {ok}") == [["count", f"found={ok}"]]


def test_ttl_rules_of_both_blocks(both):
    both.start(http_shm="proxy_wasm_shm_ttl 500ms prefix=h.;",
               stream_shm="proxy_wasm_shm_ttl 500ms prefix=s.;")
    assert both.http_store("set h.a 1 0;set s.a 1 0;set keep 1 0") == [["set", "0"]] * 3
    time.sleep(0.8)
    assert [line[1] for line in both.tcp_store("get h.a;get s.a;get keep")] == ["1", "1", "0"]


def test_stream_only(both):
    both.start(stream_config="config=queue=jobs", http=HTTP_BARE, workers=2)
    assert both.tcp_store("set a 1 0;get a")[1][3] == "1"
    assert both.tcp_store("enq jobs one") == [["enq", "0"]]
    assert wait_lines(both.nginx, r"tstore: store: queue_ready root=\d+ queue=1 0 (one)", 1) \
        == ["one"], both.nginx.log()


def test_stream_block_first(both):
    # stream{} declares the zone first and owns it: http{} attaches, and its
    # queues are still delivered (the owner's wake-up runs http's delivery)
    both.nginx.stream_first = True
    both.start(http_config="config=queue=hjobs", workers=2)
    assert both.tcp_store("set k tcp 0;counter first_total 4") == [["set", "0"],
                                                                   ["counter", "0"]]
    assert both.http_store("get k")[0][3] == "tcp"
    assert "\nfirst_total 4\n" in "\n" + both.nginx.request("/metrics").body.decode()
    queue_round(both, "hstore", "hjobs", both.tcp_store, 5)


def test_reload_keeps_the_store_of_both(both):
    both.start(workers=2)
    assert both.http_store("set h 1 0;counter reloads_total 2") == [["set", "0"],
                                                                   ["counter", "0"]]
    assert both.tcp_store("set t 2 0") == [["set", "0"]]
    assert both.nginx.reload(both.http(), workers=2, stream=both.stream()), both.nginx.log()
    assert [line[3] for line in both.tcp_store("get h;get t")] == ["1", "2"]
    assert [line[3] for line in both.http_store("get h;get t")] == ["1", "2"]
    assert "\nreloads_total 2\n" in "\n" + both.nginx.request("/metrics").body.decode()
    # a reload that drops stream{} keeps http's view of the same store
    assert both.nginx.reload(both.http(), workers=2), both.nginx.log()
    assert both.http_store("get t")[0][3] == "2"


def test_shm_quotas_of_both_blocks(both):
    """proxy_wasm_shm_quota in http{} and stream{}: one store, so a vm_id's
    quota given in both must agree; a quota given in stream{} only bounds
    http{}'s writes of that vm_id too, and no other vm_id's."""
    rc, err = both.nginx.test_config(both.http("proxy_wasm_shm_quota 64k vm_id=both;"),
                                     stream=both.stream("proxy_wasm_shm_quota 32k vm_id=both;"))
    assert rc != 0
    assert re.search(r"\[emerg\] \d+#\d+: proxy_wasm_shm_quota: 65536 and 32768 bytes for "
                     r"vm_id both: http\{\} and stream\{\} share one store", err), err
    both.start(http_shm="proxy_wasm_shm_quota 1m;",
               stream_shm="proxy_wasm_shm 1m eviction=none; proxy_wasm_shm_quota 1m; "
                          "proxy_wasm_shm_quota 20k vm_id=both;")
    lines = both.http_store("fill k 50 1000")
    ok = int(lines[0][1].split("=")[1])
    assert 18 <= ok <= 19 and lines[0][2] == f"mismatch={50 - ok}", lines
    assert both.tcp_store("fill k 50 1000", port=both.other) == [
        ["fill", "ok=50", "mismatch=0", "other=0"]]
