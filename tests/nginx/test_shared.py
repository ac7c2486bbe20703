"""Shared data and shared queues across the workers of one nginx: the store
lives in the proxy_wasm_shm zone, and a queue's owner is woken through its
worker's pipe. Two workers, connections spread over them with `reuseport`;
tests/nginx/plugins/store.wasm answers the commands of its `x-store` header
(see that file), and nginx adds the worker's pid (x-pid)."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

CONF = """
    proxy_wasm_module store @WASM:tests/nginx/plugins/store.wasm@;
    @SHM@
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm store @CONFIG@;
            add_header x-pid $pid always;
            proxy_pass http://@UPSTREAM@;
        }
        location /metrics {
            proxy_wasm_metrics;
        }
    }
"""


def conf(shm="", config=""):
    return CONF.replace("@SHM@", shm).replace("@CONFIG@", config)


def store(nginx, cmds):
    """Runs store.wasm commands in a worker: (response lines split in words,
    the worker's pid)."""
    r = nginx.request("/", headers={"x-store": cmds})
    assert r.status == 200, r.body
    return [line.split(" ") for line in r.body.decode().splitlines()], r.header("x-pid")


def test_a_counter_incremented_by_concurrent_requests_in_two_workers(nginx):
    nginx.start(conf(), workers=2)
    assert store(nginx, "set counter 0 0")[0] == [["set", "0"]]
    n = 300
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: store(nginx, "incr counter"), range(n)))
    pids = {pid for _, pid in results}
    assert len(pids) == 2, "both workers must take part"
    statuses = [lines[0][1] for lines, _ in results]
    assert statuses == ["0"] * n
    # get + set with the CAS it read: every value is written exactly once
    written = sorted(int(lines[0][2]) for lines, _ in results)
    assert written == list(range(1, n + 1))
    assert store(nginx, "get counter")[0][0][3] == str(n)
    assert "[alert]" not in nginx.log() and "[crit]" not in nginx.log()


def test_cas(nginx):
    nginx.start(conf(), workers=2)
    lines, _ = store(nginx, "set k a 0;get k")
    assert lines[0] == ["set", "0"]
    assert lines[1][:2] == ["get", "0"] and lines[1][3] == "a"
    cas1 = lines[1][2]
    assert cas1 != "0"
    lines, _ = store(nginx, f"set k b {cas1};set k c {cas1};get k")
    assert lines[0] == ["set", "0"]
    assert lines[1] == ["set", "8"]  # CasMismatch: stale
    assert lines[2][3] == "b"
    cas2 = lines[2][2]
    assert cas2 != cas1
    # the stale CAS from another request (maybe the other worker) too
    assert store(nginx, f"set k x {cas1}")[0] == [["set", "8"]]
    # cas 0 writes unconditionally
    lines, _ = store(nginx, "set k d 0;get k")
    assert lines[0] == ["set", "0"] and lines[1][3] == "d"
    cas3 = lines[1][2]
    # a missing key is created, whatever the CAS
    assert store(nginx, "set fresh v 12345;get fresh")[0][0] == ["set", "0"]
    # delete: a stale CAS is refused, the current one deletes
    lines, _ = store(nginx, f"del k {cas2};get k;del k {cas3};get k")
    assert lines[0] == ["del", "8"]
    assert lines[1][3] == "d"
    assert lines[2] == ["del", "0"]
    assert lines[3][:2] == ["get", "1"]  # NotFound


def test_eviction_lru_keeps_serving(nginx):
    nginx.start(conf("proxy_wasm_shm 256k eviction=lru;"), workers=2)
    # about 2 MiB of values into a 256 KiB zone: every write succeeds,
    # the least recently used keys make room
    for batch in range(4):
        lines, _ = store(nginx, f"fill b{batch}k 128 4000")
        assert lines == [["fill", "ok=128", "mismatch=0", "other=0"]]
    found = [int(store(nginx, f"count b{batch}k 128")[0][0][1].split("=")[1])
             for batch in range(4)]
    assert found[3] > 0, found
    assert sum(found) < 4 * 128, found  # something was evicted
    assert found[0] < 128, found  # ... the oldest first
    assert store(nginx, "get b3k127")[0][0][1] == "0"  # the newest is there
    assert nginx.request("/").status == 200
    assert "ngx_slab_alloc() failed" not in nginx.log()


def test_eviction_none_refuses(nginx):
    nginx.start(conf("proxy_wasm_shm 256k eviction=none;"), workers=2)
    lines, _ = store(nginx, "fill k 512 4000")
    m = re.match(r"ok=(\d+)", lines[0][1])
    ok = int(m.group(1))
    assert 0 < ok < 512
    assert lines[0][2] == f"mismatch={512 - ok}"  # refused: CasMismatch
    # what was written stays, requests keep being served
    assert store(nginx, f"count k {ok}")[0] == [["count", f"found={ok}"]]
    assert store(nginx, "get k0")[0][0][1] == "0"
    assert nginx.request("/").status == 200
    assert "ngx_slab_alloc() failed" not in nginx.log()


def test_data_survives_reload(nginx):
    nginx.start(conf(), workers=2)
    assert store(nginx, "set kept yes 0;counter reloads_total 5")[0] == [["set", "0"],
                                                                          ["counter", "0"]]
    assert nginx.reload(conf(), workers=2), nginx.log()
    lines, _ = store(nginx, "get kept")
    assert lines[0][1] == "0" and lines[0][3] == "yes"
    assert "\nreloads_total 5\n" in nginx.request("/metrics").body.decode()


def test_a_new_zone_size_starts_an_empty_store(nginx):
    nginx.start(conf("proxy_wasm_shm 1m;"), workers=2)
    assert store(nginx, "set kept yes 0")[0] == [["set", "0"]]
    assert nginx.reload(conf("proxy_wasm_shm 2m;"), workers=2), nginx.log()
    assert store(nginx, "get kept")[0][0][:2] == ["get", "1"]  # NotFound
    assert store(nginx, "set kept again 0;get kept")[0][1][3] == "again"


def test_queue_wakes_the_registering_worker_in_fifo_order(nginx):
    nginx.start(conf(config="config=queue=jobs"), workers=2)
    assert nginx.wait_log(r"(?s)store: registered jobs 0 1.*store: registered jobs 0 1")
    # the last root context to register a queue gets its items: make it a
    # known worker
    lines, owner = store(nginx, "reg jobs")
    assert lines == [["reg", "0", "1"]]
    senders = []
    i = 0
    # enqueue from both workers (connections land on either)
    while i < 200 and (len(senders) < 10 or len(set(senders)) < 2):
        lines, pid = store(nginx, f"enq jobs item{i}")
        assert lines == [["enq", "0"]]
        senders.append(pid)
        i += 1
    assert len(set(senders)) == 2, "no enqueue came from the other worker"
    pattern = r"(\d+)#\d+: .*store: queue_ready root=\d+ queue=1 0 (item\d+)"
    got = []
    for _ in range(100):
        got = re.findall(pattern, nginx.log())
        if len(got) == i:
            break
        threading.Event().wait(0.05)
    assert [item for _, item in got] == [f"item{k}" for k in range(i)]  # FIFO, each once
    assert {pid for pid, _ in got} == {owner}
    # nothing left
    assert store(nginx, "deq jobs")[0] == [["deq", "7", ""]]  # Empty


def test_queue_registered_and_filled_by_one_request(nginx):
    nginx.start(conf(), workers=2)
    # registered by a request's root context; dequeued by requests, in order
    lines, _ = store(nginx, "reg q;enq q one;enq q two;enq q three")
    assert lines == [["reg", "0", "1"], ["enq", "0"], ["enq", "0"], ["enq", "0"]]
    # the registering worker's on_queue_ready takes one per item; the rest
    # would wait here: everything was taken in order
    pattern = r"store: queue_ready root=\d+ queue=1 0 (\w+)"
    assert nginx.wait_log(r"queue=1 0 three")
    assert re.findall(pattern, nginx.log()) == ["one", "two", "three"]
    assert store(nginx, "enq nosuch x")[0] == [["enq", "1"]]  # NotFound


def test_configuration_errors(nginx):
    for shm, error in [
        ("proxy_wasm_shm 16k;",
         r'proxy_wasm_shm: size "16k" is too small, the minimum is \d+'),
        ("proxy_wasm_shm lots;", r'proxy_wasm_shm: invalid size "lots"'),
        ("proxy_wasm_shm 1m eviction=fifo;", r'invalid parameter "eviction=fifo"'),
        ("proxy_wasm_shm 1m eviction=lru eviction=none;",
         r'invalid number of arguments in "proxy_wasm_shm" directive'),
        ("proxy_wasm_shm 1m; proxy_wasm_shm 2m;", r'"proxy_wasm_shm" directive is duplicate'),
        ("proxy_wasm_shm_ttl soon;", r'proxy_wasm_shm_ttl: invalid time "soon"'),
        ("proxy_wasm_shm_ttl 1s key=a;", r'invalid parameter "key=a"'),
        ("proxy_wasm_shm_ttl 1s prefix=" + "p" * 65 + ";",
         r"proxy_wasm_shm_ttl: vm_id and prefix may have at most 64 bytes"),
        (" ".join(["proxy_wasm_shm_ttl 1s;"] * 17), r"proxy_wasm_shm_ttl: more than 16 rules"),
    ]:
        rc, err = nginx.test_config(conf(shm))
        assert rc != 0, shm
        assert re.search(r"\[emerg\] \d+#\d+: " + error, err), err
    rc, err = nginx.test_config(conf("proxy_wasm_shm 1m eviction=none;"))
    assert rc == 0, err


def test_ttl_forgets_keys_of_a_prefix(nginx):
    nginx.start(conf("proxy_wasm_shm 1m; proxy_wasm_shm_ttl 500ms prefix=t.;"), workers=2)
    assert store(nginx, "set t.a 1 0")[0] == [["set", "0"]]
    assert store(nginx, "set keep 1 0")[0] == [["set", "0"]]
    assert store(nginx, "get t.a")[0][0][1] == "0"  # Ok
    time.sleep(0.8)
    assert store(nginx, "get t.a")[0][0][1] == "1"  # NotFound: expired
    assert store(nginx, "get keep")[0][0][1] == "0"  # no rule: kept
    # written again, the key lives again
    assert store(nginx, "set t.a 2 0")[0] == [["set", "0"]]
    assert store(nginx, "get t.a")[0][0][1] == "0"


def test_a_trap_in_on_queue_ready(nginx):
    nginx.start(conf(), workers=1)
    lines, _ = store(nginx, "reg q;enq q one;enq q trap")
    assert lines == [["reg", "0", "1"], ["enq", "0"], ["enq", "0"]]
    assert nginx.wait_log(r"plugin \"store\" trapped in proxy_on_queue_ready"), nginx.log()
    assert nginx.wait_log(r'proxy_wasm_module "store": delivering shared queue items failed: '
                          r'plugin trapped')
    # the VM is rebuilt; the queue keeps its owner and the next item arrives
    assert store(nginx, "enq q two")[0] == [["enq", "0"]]
    assert nginx.wait_log(r"queue_ready root=\d+ queue=1 0 two"), nginx.log()
    got = re.findall(r"store: queue_ready root=\d+ queue=1 0 (\w+)", nginx.log())
    assert got == ["one", "trap", "two"]


def test_queues_after_a_reload_to_more_workers(nginx):
    # a store made for two workers, kept by four: workers 2 and 3 share
    # slot 0 and its pipe; whatever they register is still delivered
    nginx.start(conf(), workers=2)
    assert nginx.reload(conf(), workers=4), nginx.log()
    pids = set()
    for i in range(40):
        lines, pid = store(nginx, f"reg q{i};enq q{i} item{i}")
        assert lines == [["reg", "0", str(i + 1)], ["enq", "0"]]
        pids.add(pid)
    assert len(pids) >= 3, pids
    assert nginx.wait_log(r"queue=40 0 item39"), nginx.log()
    for _ in range(100):
        got = re.findall(r"store: queue_ready root=\d+ queue=\d+ 0 (item\d+)", nginx.log())
        if len(got) == 40:
            break
        threading.Event().wait(0.05)
    assert sorted(got) == sorted(f"item{i}" for i in range(40))


QUOTA = """
    proxy_wasm_module store @WASM:tests/nginx/plugins/store.wasm@ vm_id=store;
    proxy_wasm_module big @WASM:tests/nginx/plugins/store.wasm@ vm_id=big;
    @SHM@
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / { proxy_wasm store; }
        location /big { proxy_wasm big; }
        location /metrics { proxy_wasm_metrics; }
    }
"""


def quota_scrape(nginx):
    from test_metrics import scrape  # test_metrics imports this file
    return scrape(nginx)[1]


def quota_fill(nginx, path, cmds):
    r = nginx.request(path, headers={"x-store": cmds})
    assert r.status == 200, r.body
    return [line.split(" ") for line in r.body.decode().splitlines()]


def test_shm_quota_refuses_a_vm_id_over_it(nginx):
    """proxy_wasm_shm_quota 40k, 200k for vm_id big: vm_id "store" fills its
    40 KiB (each 1000-byte key counts 64 + 5 + key + 1000 bytes) and is
    refused with CasMismatch beyond; "big" still writes; the refusals are
    logged and counted."""
    nginx.start(QUOTA.replace("@SHM@", "proxy_wasm_shm 1m eviction=none;\n"
                              "proxy_wasm_shm_quota 40k;\n"
                              "proxy_wasm_shm_quota 200k vm_id=big;"), workers=2)
    lines = quota_fill(nginx, "/", "fill k 100 1000")
    ok = int(lines[0][1].split("=")[1])
    assert 37 <= ok <= 38 and lines[0][2] == f"mismatch={100 - ok}", lines
    assert quota_fill(nginx, "/big", "fill k 100 1000") == [
        ["fill", "ok=100", "mismatch=0", "other=0"]]
    assert quota_fill(nginx, "/", "count k 100") == [["count", f"found={ok}"]]
    # a delete makes room again
    assert quota_fill(nginx, "/", "del k0 0;fill z 1 1000") == [
        ["del", "0"], ["fill", "ok=1", "mismatch=0", "other=0"]]
    assert nginx.wait_log(r"\[error\].*proxy_set_shared_data: over the shared memory quota of "
                          r"this vm_id for 100\d bytes \(key \"k\d+\"\); not written"), nginx.log()
    assert len(re.findall(r"over the shared memory quota", nginx.log())) == 1  # per callback
    samples = quota_scrape(nginx)
    assert samples[("pwasm_shared_data_refused_total", (("reason", "quota"),))] == 100 - ok
    assert samples[("pwasm_shared_data_refused_total", (("reason", "full"),))] == 0
    assert samples[("pwasm_limit_hits_total", (("limit", "shm_quota"),
                                               ("plugin", "store")))] == 100 - ok


def test_shm_quota_with_lru_evicts_the_vm_ids_own_keys(nginx):
    nginx.start(QUOTA.replace("@SHM@", "proxy_wasm_shm 1m eviction=lru;\n"
                              "proxy_wasm_shm_quota 40k;"), workers=2)
    assert quota_fill(nginx, "/big", "fill old 30 1000")[0][1] == "ok=30"
    # store's writes all succeed, evicting its own oldest keys, not big's
    assert quota_fill(nginx, "/", "fill k 100 1000") == [
        ["fill", "ok=100", "mismatch=0", "other=0"]]
    found = int(quota_fill(nginx, "/", "count k 100")[0][1].split("=")[1])
    assert 37 <= found <= 38, found
    assert quota_fill(nginx, "/", "get k99")[0][1] == "0"  # the newest is there
    assert quota_fill(nginx, "/big", "count old 30") == [["count", "found=30"]]
    samples = quota_scrape(nginx)
    assert samples[("pwasm_shared_data_evictions_total", ())] == 100 - found
    assert "over the shared memory quota" not in nginx.log()


def test_shm_quota_configuration_errors(nginx):
    for shm, error in [
        ("proxy_wasm_shm_quota lots;", r'proxy_wasm_shm_quota: invalid size "lots"'),
        ("proxy_wasm_shm_quota 1m id=a;", r'invalid parameter "id=a"'),
        ("proxy_wasm_shm_quota 1m; proxy_wasm_shm_quota 2m;",
         r"proxy_wasm_shm_quota: a second quota for every vm_id"),
        ("proxy_wasm_shm_quota 1m vm_id=a; proxy_wasm_shm_quota 1m vm_id=a;",
         r"proxy_wasm_shm_quota: a second quota for vm_id a"),
    ]:
        rc, err = nginx.test_config(QUOTA.replace("@SHM@", shm))
        assert rc != 0, shm
        assert re.search(r"\[emerg\] \d+#\d+: " + error, err), err
    rc, err = nginx.test_config(QUOTA.replace("@SHM@", "proxy_wasm_shm_quota 64k; "
                                              "proxy_wasm_shm_quota 1m vm_id=big;"))
    assert rc == 0, err
