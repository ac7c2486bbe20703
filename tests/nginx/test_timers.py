"""proxy_set_tick_period_milliseconds: proxy_on_tick runs in every worker
at the plugin's period, and a pending tick never delays a graceful
shutdown (the timers are cancelable)."""

import re
import signal
import time

from test_shared import conf, store


def ticks(nginx):
    """{pid: ticks logged so far} of store.wasm's root contexts."""
    counts = {}
    for pid in re.findall(r"(\d+)#\d+: .*store: tick root=\d+ n=\d+", nginx.log()):
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def test_ticks_in_every_worker_at_the_period(nginx):
    nginx.start(conf(config="config=tick=100"), workers=2)
    assert nginx.wait_log(r"(?s)tick period root=\d+ 100 0.*tick period root=\d+ 100 0")
    time.sleep(0.5)
    before = ticks(nginx)
    t0 = time.time()
    time.sleep(2.0)
    after = ticks(nginx)
    elapsed = time.time() - t0
    assert len(after) == 2, after  # both workers tick
    for pid, n in after.items():
        delta = n - before.get(pid, 0)
        # 100 ms: about 10 per second; the machine may be busy, never faster
        assert 0.5 * elapsed * 10 <= delta <= elapsed * 10 + 2, (pid, delta, elapsed)
    # requests are served meanwhile, by the same workers
    assert store(nginx, "get nothing")[1] in after


def test_quit_does_not_wait_for_a_pending_tick(nginx):
    nginx.start(conf(config="config=tick=60000"), workers=2)
    assert nginx.wait_log(r"(?s)tick period root=\d+ 60000 0.*tick period root=\d+ 60000 0")
    store(nginx, "get nothing")
    t0 = time.time()
    nginx.proc.send_signal(signal.SIGQUIT)  # nginx -s quit
    nginx.proc.wait(timeout=30)
    assert time.time() - t0 < 5, nginx.log()
    assert ticks(nginx) == {}
    log = nginx.log()
    assert "[alert]" not in log, log


def test_reload_stops_the_old_workers_ticks(nginx):
    nginx.start(conf(config="config=tick=100"), workers=2)
    assert nginx.wait_log(r"(?s)tick period root=\d+ 100 0.*tick period root=\d+ 100 0")
    old = set(re.findall(r"start worker process (\d+)", nginx.log()))
    t0 = time.time()
    assert nginx.reload(conf(config="config=tick=100"), workers=2), nginx.log()
    # the old workers exit at once: no request, and only cancelable timers
    for pid in old:
        assert nginx.wait_log(rf"worker process {pid} exited", timeout=10), nginx.log()
    assert time.time() - t0 < 10
    time.sleep(0.5)
    counts = ticks(nginx)
    new = set(counts) - old
    assert len(new) == 2, counts
    frozen = {pid: counts.get(pid, 0) for pid in old}
    time.sleep(0.5)
    assert {pid: ticks(nginx).get(pid, 0) for pid in old} == frozen


SERVICE = """
    proxy_wasm_module store @WASM:tests/nginx/plugins/store.wasm@;
    proxy_wasm_service store root_id=svc "config=@CONFIG@" @SINGLETON@;
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm store;
            add_header x-pid $pid always;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def service(config, singleton):
    return SERVICE.replace("@CONFIG@", config).replace("@SINGLETON@",
                                                       "singleton" if singleton else "")


def test_a_service_ticks_in_every_worker(nginx):
    nginx.start(service("tick=100", False), workers=2)
    time.sleep(1.5)
    counts = ticks(nginx)
    assert len(counts) == 2 and min(counts.values()) >= 3, counts


def test_a_singleton_service_ticks_in_one_worker(nginx):
    nginx.start(service("tick=100", True), workers=2)
    time.sleep(1.5)
    counts = ticks(nginx)
    assert len(counts) == 1 and min(counts.values()) >= 3, counts
    # the requests' root context (another root_id) is in both workers
    pids = {store(nginx, "get nothing")[1] for _ in range(40)}
    assert len(pids) == 2


def test_a_singleton_service_owns_a_queue(nginx):
    nginx.start(service("queue=jobs", True), workers=2)
    master = str(nginx.proc.pid)
    m = nginx.wait_log(rf" (?!{master}#)(\d+)#\d+: .*store: registered jobs 0 1")
    assert m, nginx.log()
    owner = m.group(1)
    senders = set()
    for i in range(30):
        lines, pid = store(nginx, f"enq jobs job{i}")
        assert lines == [["enq", "0"]]
        senders.add(pid)
    assert len(senders) == 2
    assert nginx.wait_log(r"queue_ready root=\d+ queue=1 0 job29")
    got = re.findall(r"(\d+)#\d+: .*store: queue_ready root=\d+ queue=1 0 (job\d+)", nginx.log())
    assert [job for _, job in got] == [f"job{i}" for i in range(30)]
    assert {pid for pid, _ in got} == {owner}


def test_service_errors(nginx):
    rc, err = nginx.test_config("""
    proxy_wasm_service nosuch;
    server { listen 127.0.0.1:@PORT@; }
""")
    assert rc != 0
    assert re.search(r'\[emerg\] .*proxy_wasm_service "nosuch": no proxy_wasm_module with this name',
                     err), err
    rc, err = nginx.test_config("""
    proxy_wasm_module store @WASM:tests/nginx/plugins/store.wasm@;
    proxy_wasm_service store colour=blue;
    server { listen 127.0.0.1:@PORT@; }
""")
    assert rc != 0
    assert 'invalid parameter "colour=blue"' in err, err
    rc, err = nginx.test_config("""
    proxy_wasm_module store @WASM:tests/nginx/plugins/store.wasm@;
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm store singleton; } }
""")
    assert rc != 0
    assert 'invalid parameter "singleton"' in err, err


def test_a_trap_in_on_tick_is_logged_and_the_next_tick_rebuilds_the_vm(nginx):
    nginx.start(conf(config='"config=tick=100 trap_tick=3"'), workers=1)
    assert nginx.wait_log(r'proxy_wasm_module "store": proxy_on_tick failed: plugin trapped',
                          timeout=10), nginx.log()
    # the rebuilt instance starts again (on_configure sets the period again)
    # and counts its ticks from 1
    assert nginx.wait_log(r"(?s)proxy_on_tick failed.*store: tick root=\d+ n=2", timeout=10)
    assert store(nginx, "get nothing")[0] == [["get", "1", "0", ""]]
