"""A reload (SIGHUP) under load drops no request, and the old workers finish
what they had in flight with their old VMs: requests held by a slow
upstream and requests paused by a plugin (a callout to a slow service)
across the reload are answered by the old configuration's plugins. A call without a timeout holds the
old worker too (before, the worker ended with no timer left and dropped
the paused request)."""

import http.client
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import Nginx
from soak import SLOW_SECONDS, Upstream

CONF = """
    proxy_wasm_module gen @WASM:examples/add_header.wasm@;
    proxy_wasm_module callout @WASM:tests/nginx/plugins/callout.wasm@;
    proxy_wasm_callout_allow callout @UPSTREAM@;
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location / {
            proxy_wasm gen config=x-gen=@GEN@;
            proxy_pass http://@UPSTREAM@;
        }
        location /paused {
            proxy_wasm callout;
            proxy_wasm gen config=x-gen=@GEN@;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def get(port, path, headers=None):
    """(status, x-gen, body, seconds), one connection per request."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=dict(headers or {}, Connection="close"))
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-gen"), resp.read(), time.monotonic() - t0
    finally:
        conn.close()


def test_reload_under_load_drops_nothing_and_old_workers_finish_with_old_vms(tmp_path):
    upstream = Upstream()
    nginx = Nginx(tmp_path / "nginx", upstream)
    try:
        nginx.start(CONF.replace("@GEN@", "one"), level="notice", workers=2)
        old_workers = set(re.findall(r"start worker process (\d+)", nginx.log()))
        assert get(nginx.port, "/")[:3] == (200, "one", b"upstream ok\n")

        pool = ThreadPoolExecutor(max_workers=16)
        # in flight across the reload: 4 held by the slow upstream, 4 paused
        # by the callout plugin until the slow service answers
        target = f"127.0.0.1:{upstream.port}"
        held = [pool.submit(get, nginx.port, "/slow") for _ in range(4)]
        # (2 calls without a timeout: nothing but the call holds the worker)
        held += [pool.submit(get, nginx.port, "/paused",
                             dict({"x-call": target, "x-call-path": "/slow"},
                                  **({"x-call-timeout": "10000"} if i % 2 else {})))
                 for i in range(4)]
        # and a steady load before, during and after the reload
        stop = threading.Event()
        load = []

        def client():
            while not stop.is_set():
                load.append(get(nginx.port, "/"))

        clients = [pool.submit(client) for _ in range(4)]
        # all 8 in flight: 4 at the upstream, 4 callouts at the service
        deadline = time.time() + SLOW_SECONDS
        while (sum(1 for p, h in upstream.requests if p == "/slow") < 8
               and time.time() < deadline):
            time.sleep(0.01)
        assert sum(1 for p, h in upstream.requests if p == "/slow") == 8
        nginx.write_conf(CONF.replace("@GEN@", "two"), level="notice", workers=2)
        reloaded = time.monotonic()
        nginx.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60
        while get(nginx.port, "/")[1] != "two" and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        for c in clients:
            c.result()
        answers = [h.result() for h in held]
        done = time.monotonic()

        # every request of the load was answered, by one generation or the other
        assert load and all(a[0] == 200 and a[2] == b"upstream ok\n" for a in load), \
            [a for a in load if a[0] != 200][:5]
        gens = [a[1] for a in load]
        assert set(gens) == {"one", "two"}, set(gens)
        # the held and paused requests spanned the reload and were answered
        # by the old workers' plugins: the old generation
        assert done - reloaded > 0
        for status, gen, body, took in answers:
            assert (status, gen, body) == (200, "one", b"upstream ok\n"), answers
            assert took >= SLOW_SECONDS * 0.9
        # the paused ones went on with the slow service's answer (old VM's
        # callout context)
        paused = [h for p, h in upstream.requests if p == "/paused"]
        assert [h.get("x-auth-status") for h in paused] == ["200"] * 4, paused
        # the old workers exited normally after finishing, nginx is alive
        deadline = time.time() + 30
        while time.time() < deadline and not all(
                f"worker process {pid} exited with code 0" in nginx.log() for pid in old_workers):
            time.sleep(0.1)
        log = nginx.log()
        for pid in old_workers:
            assert f"worker process {pid} exited with code 0" in log, log[-3000:]
        assert "exited on signal" not in log and "[alert]" not in log and "[emerg]" not in log
        assert nginx.proc.poll() is None
        assert get(nginx.port, "/")[:2] == (200, "two")
        pool.shutdown()
    finally:
        nginx.stop()
        upstream.close()
