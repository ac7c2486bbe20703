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
