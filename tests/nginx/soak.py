#!/usr/bin/python3
"""Chaos soak: Debian's nginx with both pwasm modules under load and faults.

    /usr/bin/python3 tests/nginx/soak.py --seconds 600 [--dir build/soak]
    make soak SOAK_SECONDS=600          (the same, after building)
    tests/nginx/test_soak.py            (60 s, part of make test-nginx)

One nginx (2 workers, http{} and stream{}) with a location per way a
plugin can fail (see HTTP and STREAM): traps on a fraction of requests (fail closed and
fail open, in request and response headers), a 1 s CPU loop stopped by the
CPU time limit, a plugin leaking linear memory until its VM's memory limit,
callouts to a dead port, to a server that never answers (with a timeout)
and to a slow one (without a timeout, across reloads), shared data
and queues from every request, a well-behaved plugin whose answer names
the configuration generation, requests that span reloads (a slow
upstream), and a TCP filter in front of an echo server.

Client threads send a mix of requests, one new connection each, and check
every answer against what its location and fault must give. Meanwhile a
chaos thread reloads nginx every few seconds (each reload a new
generation), corrupts the compile cache entries the master loaded between
reloads (each must be refused and compiled again, never loaded), and
SIGKILLs a worker now and then (nginx's master starts another).

Outcome of each request, by location:
  ok        the expected answer
  policy    the location's failure-policy answer (503 where closed) for a
            request that did not ask for a fault: a plugin taken out (e.g.
            by a crash-loop brake) answers so; counted, not a failure
  killed    no or a broken answer from a request in flight while we
            SIGKILLed a worker: nginx's behaviour (the connection dies with
            its process), counted apart, not a failure
  fail      anything else: a reset, an empty reply, a 502, a wrong body, a
            timeout, a request over the latency bound

At the end: the master is alive, no worker exited on a signal we did not
send, no alert/crit/emerg line but the expected ones (our kills), the shared
counter equals the increments answered (within the requests lost to
kills), workers' RSS is bounded, no request failed. The report (JSON, and
a summary on stdout) has the counts, the faults and RSS over time.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import BUILD, CACHE, Nginx, children, free_port, rss_kb  # noqa: E402

SLOW_SECONDS = 2.0          # the slow upstream's delay: requests span reloads
LATENCY_BOUND = 20.0        # no answer may take longer (loop 1 s, slow 2 s, CPU contention)
KILL_WINDOW = (0.2, 1.0)    # a failure this close to a kill (before, after) is "killed"
RSS_LIMIT_KB = 512 * 1024   # no worker above this

HTTP = """
    proxy_wasm_cache_dir @CACHE@;
    proxy_wasm_module gen     @WASM:examples/add_header.wasm@;
    proxy_wasm_module trap    @WASM:tests/plugins/trap.wasm@;
    proxy_wasm_module loop    @WASM:tests/plugins/loop.wasm@;
    proxy_wasm_module leak    @WASM:tests/nginx/plugins/leak.wasm@;
    proxy_wasm_module callout @WASM:tests/nginx/plugins/callout.wasm@;
    proxy_wasm_module store   @WASM:tests/nginx/plugins/store.wasm@ vm_id=soak;
    proxy_wasm_callout_allow callout 127.0.0.1:@DEAD@ 127.0.0.1:@MUTE@ @UPSTREAM@;
    proxy_wasm_shm 4m;
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location /ok {
            proxy_wasm gen config=x-gen=@GEN@;
            proxy_pass http://@UPSTREAM@;
        }
        location /slow {
            proxy_wasm gen config=x-gen=@GEN@;
            proxy_pass http://@UPSTREAM@;
        }
        location /trap-closed {
            proxy_wasm trap;
            proxy_wasm gen config=x-gen=@GEN@;
            proxy_pass http://@UPSTREAM@;
        }
        location /trap-open {
            proxy_wasm_failure_policy open;
            proxy_wasm trap;
            proxy_wasm gen config=x-gen=@GEN@;
            proxy_pass http://@UPSTREAM@;
        }
        location /loop {
            proxy_wasm_failure_policy open;
            proxy_wasm loop;
            proxy_pass http://@UPSTREAM@;
        }
        location /leak {
            proxy_wasm leak;
            proxy_pass http://@UPSTREAM@;
        }
        location /callout {
            proxy_wasm callout;
            proxy_pass http://@UPSTREAM@;
        }
        location /store {
            proxy_wasm store;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""

STREAM = """
    proxy_wasm_cache_dir @CACHE@;
    proxy_wasm_module tcp @WASM:tests/nginx/plugins/tcp_stream.wasm@;
    server {
        listen 127.0.0.1:@SPORT@ reuseport;
        proxy_wasm tcp "config=upper";
        proxy_half_close on;
        proxy_pass 127.0.0.1:@ECHO@;
    }
"""


class Served:
    """A server on a free port of 127.0.0.1, a thread per connection."""

    def serve(self, server_class, handler):
        # a peer gone mid-answer (a killed worker, a replaced response) is
        # part of the run: no traceback on stderr
        server_class.handle_error = lambda *args: None
        self.server = server_class(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Upstream(Served):
    """HTTP/1.0 upstream: "upstream ok\\n"; a path starting with /slow after
    SLOW_SECONDS. Keeps the (path, {lower-case header: value}) of every
    request as it arrives (the last 1000)."""

    def __init__(self):
        self.requests = []
        upstream = self
        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024
            daemon_threads = True

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                upstream.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}))
                del upstream.requests[:-1000]
                if self.path.startswith("/slow"):
                    time.sleep(SLOW_SECONDS)
                body = b"upstream ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.serve(Server, Handler)


class TcpServer(Served):
    """A threaded TCP server on 127.0.0.1: `echo` sends back what it reads,
    otherwise it accepts and never answers (a callout target that hangs)."""

    def __init__(self, echo):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(60)
                try:
                    while True:
                        data = self.request.recv(65536)
                        if not data:
                            break
                        if echo:
                            self.request.sendall(data)
                    self.request.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 1024

        self.serve(Server, Handler)


class Soak:
    def __init__(self, workdir, seconds, threads=6, reload_every=5.0, kill_every=15.0,
                 seed=None):
        self.dir = os.path.abspath(workdir)
        self.seconds = seconds
        self.threads = threads
        self.reload_every = reload_every
        self.kill_every = kill_every
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.gen = 1
        self.gens = {"1"}
        self.counts = {}          # (location, outcome) -> n
        self.latency = {}         # location -> max seconds
        self.failures = []        # descriptions of failed requests
        self.kills = []           # (time, pid)
        self.reloads = []         # (time, generation, applied seconds or None)
        self.corruptions = []     # (time, kind, file)
        self.rss = []             # (t, {pid: kB})
        self.incr_ok = 0
        self.damaged_inodes = set()  # files we wrote into the cache
        self.loaded_damaged = []     # (pid, path) of any process that mapped one
        self.last_loop = 0.0
        self.start_time = None

    # -- setup ------------------------------------------------------------

    def setup(self):
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        # A private compile cache, seeded from the shared one (corrupting
        # the shared one would disturb other suites); a missing entry is
        # compiled at the first start.
        self.cache = os.path.join(self.dir, "cache")
        if os.path.isdir(CACHE):
            shutil.copytree(CACHE, self.cache)
        else:
            os.makedirs(self.cache)
        os.chmod(self.cache, 0o755)
        self.upstream = Upstream()
        self.echo = TcpServer(echo=True)
        self.mute = TcpServer(echo=False)
        self.dead = free_port()     # nothing listens there
        self.sport = free_port()
        self.nginx = Nginx(os.path.join(self.dir, "nginx"), self.upstream)

    def conf(self):
        def sub(text):
            return (text.replace("@CACHE@", self.cache).replace("@GEN@", str(self.gen))
                    .replace("@DEAD@", str(self.dead)).replace("@MUTE@", str(self.mute.port))
                    .replace("@SPORT@", str(self.sport))
                    .replace("@ECHO@", str(self.echo.port)))
        return sub(HTTP), sub(STREAM)

    def start_nginx(self):
        http_conf, stream_conf = self.conf()
        self.nginx.start(http_conf, level="notice", workers=2, stream=stream_conf)
        # nginx's stderr is a pipe: drain it (start-up warnings go there)
        self.stderr_file = os.path.join(self.dir, "nginx.stderr")
        threading.Thread(target=self.drain, args=(self.nginx.proc.stderr,),
                         daemon=True).start()
        threading.Thread(target=self.drain, args=(self.nginx.proc.stdout,),
                         daemon=True).start()

    def drain(self, pipe):
        try:
            with open(self.stderr_file, "ab") as out:
                for line in iter(pipe.readline, b""):
                    out.write(line)
                    out.flush()
        except (OSError, ValueError):
            pass  # closed by Nginx.stop()

    # -- processes --------------------------------------------------------

    def workers(self):
        """{pid: command line} of the master's children."""
        return children(self.nginx.proc.pid)

    # -- requests ---------------------------------------------------------

    def record(self, where, outcome, t0, t1, detail=None):
        with self.lock:
            key = (where, outcome)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.latency[where] = max(self.latency.get(where, 0.0), t1 - t0)
            if outcome == "fail" and len(self.failures) < 200:
                self.failures.append(f"{where} at {t0 - self.start_time:.2f}s "
                                     f"({t1 - t0:.2f}s): {detail}")

    def near_kill(self, t0, t1):
        with self.lock:
            return any(t0 - KILL_WINDOW[0] <= k <= t1 + KILL_WINDOW[1] for k, _ in self.kills)

    def get(self, path, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=LATENCY_BOUND + 10)
        try:
            conn.request("GET", path, headers=dict(headers, Connection="close"))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def one_http(self):
        """Picks a request of the mix, sends it, classifies the answer."""
        r = self.rng.random()
        now = time.monotonic()
        if r < 0.02 and now - self.last_loop > 5.0:
            # a 1 s CPU loop now and then (it holds a worker for that second)
            self.last_loop = now
            where, path, hdrs = "loop", "/loop", {"x-loop": "1"}
        elif r < 0.12:
            where, path, hdrs = "trap-closed", "/trap-closed", {}
            if self.rng.random() < 0.3:
                kind = self.rng.choice(["unreachable", "oob", "stack", "div", "exit"])
                hdrs = self.rng.choice([{"x-trap": kind}, {"x-trap-response": kind}])
        elif r < 0.22:
            where, path, hdrs = "trap-open", "/trap-open", {}
            if self.rng.random() < 0.3:
                hdrs = {"x-trap": self.rng.choice(["unreachable", "oob", "div"])}
        elif r < 0.32:
            where, path, hdrs = "leak", "/leak", {"x-leak": "4096"}
        elif r < 0.45:
            where = "callout"
            path = "/callout"
            target = self.rng.choice(["dead", "mute", "good", "slow"])
            hdrs = {"x-call": {"dead": f"127.0.0.1:{self.dead}",
                               "mute": f"127.0.0.1:{self.mute.port}"}.get(
                                   target, f"127.0.0.1:{self.upstream.port}"),
                    "x-call-timeout": "300"}
            if target == "slow":
                # paused for SLOW_SECONDS by a call without a timeout: spans reloads
                hdrs = {"x-call": hdrs["x-call"], "x-call-path": "/slow"}
            where = f"callout-{target}"
        elif r < 0.65:
            where, path, hdrs = "store", "/store", {"x-store": "incr soak;reg soakq;"
                                                   "enq soakq v;deq soakq"}
        else:
            where, path, hdrs = "ok", "/ok", {}
        t0 = time.monotonic()
        try:
            status, headers, body = self.get(path, hdrs)
            err = None
        except Exception as e:  # reset, empty reply, timeout
            status, headers, body, err = None, {}, b"", f"{type(e).__name__}: {e}"
        t1 = time.monotonic()
        self.classify(where, hdrs, status, headers, body, err, t0, t1)

    def gen_ok(self, headers):
        with self.lock:
            return headers.get("x-gen") in self.gens

    def classify(self, where, hdrs, status, headers, body, err, t0, t1):
        fault = any(k in hdrs for k in ("x-trap", "x-trap-response"))
        upstream_ok = status == 200 and body == b"upstream ok\n"
        closed_503 = status == 503 and b"503 Service Temporarily Unavailable" in body
        outcome, detail = "fail", None
        if err is not None or status is None:
            detail = err
        elif where in ("ok", "slow", "trap-open"):
            if where == "trap-open" or not fault:
                if upstream_ok and self.gen_ok(headers):
                    outcome = "ok"
        elif where == "trap-closed":
            if fault and closed_503:
                outcome = "ok"
            elif not fault and upstream_ok and self.gen_ok(headers):
                outcome = "ok"
            elif not fault and closed_503:
                outcome = "policy"
        elif where == "loop":
            if upstream_ok:
                outcome = "ok"
        elif where == "leak":
            if upstream_ok and headers.get("x-leak-pages", "").isdigit():
                outcome = "ok"
            elif closed_503:
                outcome = "policy"   # the leak reached the memory limit and trapped
        elif where in ("callout-good", "callout-slow"):
            if upstream_ok:
                outcome = "ok"
        elif where in ("callout-dead", "callout-mute"):
            if status == 504 and body.startswith(b"callout failed: "):
                outcome = "ok"
        elif where == "store":
            m = re.match(rb"incr 0 (\d+) \d+\nreg 0 \d+\nenq 0\ndeq \d+ ", body)
            if status == 200 and m:
                outcome = "ok"
                with self.lock:
                    self.incr_ok += 1
        if outcome == "ok" and t1 - t0 > LATENCY_BOUND:
            outcome, detail = "fail", f"took {t1 - t0:.1f}s"
        if outcome == "fail" and err is not None and self.near_kill(t0, t1):
            outcome = "killed"
        if outcome == "fail" and detail is None:
            detail = f"{hdrs} -> {status} {sorted(headers.items())} {body[:120]!r}"
        self.record(where, outcome, t0, t1, detail)

    def one_stream(self):
        data = ("soak %d " % self.rng.randrange(1 << 30)).encode() * self.rng.randrange(1, 200)
        t0 = time.monotonic()
        err = None
        out = b""
        try:
            with socket.create_connection(("127.0.0.1", self.sport), timeout=LATENCY_BOUND) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    out += d
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
        t1 = time.monotonic()
        # the plugin upper-cases what goes up and prefixes "<" to each chunk
        # coming back: compare without the prefixes
        if err is None and out.replace(b"<", b"") == data.upper():
            self.record("stream", "ok", t0, t1)
        elif ((err is not None or data.upper().startswith(out.replace(b"<", b"")))
              and self.near_kill(t0, t1)):
            # cut short, with or without an error: a killed worker's
            # connections are closed by the kernel (FIN when nothing is
            # left unread, else RST)
            self.record("stream", "killed", t0, t1)
        else:
            self.record("stream", "fail", t0, t1, err or f"{len(out)} bytes, {out[:80]!r}")

    def loop(self, fn, pause=0.0):
        while not self.stop.is_set():
            fn()
            if pause:
                time.sleep(pause)

    def slow(self):
        t0 = time.monotonic()
        try:
            status, headers, body = self.get("/slow", {})
            err = None
        except Exception as e:
            status, headers, body, err = None, {}, b"", f"{type(e).__name__}: {e}"
        self.classify("slow", {}, status, headers, body, err, t0, time.monotonic())

    # -- faults -----------------------------------------------------------

    def used_cache_entries(self):
        """The cache files the master has mapped (loaded modules)."""
        try:
            with open(f"/proc/{self.nginx.proc.pid}/maps") as f:
                maps = f.read()
        except OSError:
            return []
        return sorted(set(re.findall(re.escape(self.cache) + r"/[0-9a-f]+\.so", maps)))

    def corrupt(self):
        """Damages one cache entry the master loaded. Never in place (the
        running processes map the file; nginx would not be at fault): the
        entry is replaced by a new file, or its digest or mode changed."""
        entries = self.used_cache_entries()
        if not entries:
            entries = sorted(os.path.join(self.cache, f) for f in os.listdir(self.cache)
                             if f.endswith(".so"))
        so = self.rng.choice(entries)
        kind = ["flipped", "truncated", "no-digest", "writable"][len(self.corruptions) % 4]
        tmp = so + ".soak"
        if kind in ("flipped", "truncated"):
            with open(so, "rb") as f:
                data = bytearray(f.read())
            if kind == "flipped":
                i = len(data) // 2
                data[i:i + 16] = bytes(b ^ 0xFF for b in data[i:i + 16])
            else:
                data = data[:len(data) // 3]
            with open(tmp, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o755)
            os.rename(tmp, so)
            with self.lock:
                self.damaged_inodes.add(os.stat(so).st_ino)
        elif kind == "no-digest":
            os.unlink(so[:-3] + ".sha256")
        else:
            os.chmod(so, 0o777)
        with self.lock:
            self.corruptions.append((time.monotonic() - self.start_time, kind,
                                     os.path.basename(so)))

    def reload(self):
        with self.lock:
            self.gen += 1
            gen = str(self.gen)
            self.gens.add(gen)
        http_conf, stream_conf = self.conf()
        self.nginx.write_conf(http_conf, "notice", 2, stream_conf)
        t0 = time.monotonic()
        self.nginx.proc.send_signal(signal.SIGHUP)
        applied = None
        while time.monotonic() - t0 < 120 and not self.stop.is_set():
            try:
                if self.get("/ok", {})[1].get("x-gen") == gen:
                    applied = time.monotonic() - t0
                    break
            except Exception:
                pass
            time.sleep(0.1)
        if applied is None and self.stop.is_set():
            return  # the run ended first
        self.check_maps()
        with self.lock:
            self.reloads.append((t0 - self.start_time, self.gen, applied))

    def check_maps(self):
        """Whether nginx mapped a file we damaged (by its inode: the name
        is the entry's, compiled again over it)."""
        for pid in [self.nginx.proc.pid] + list(self.workers()):
            try:
                with open(f"/proc/{pid}/maps") as f:
                    maps = f.read()
            except OSError:
                continue
            for m in re.finditer(r"^\S+ \S+ \S+ \S+ (\d+) +(\S*" + re.escape(self.cache) +
                                 r"\S*)$", maps, re.M):
                if int(m.group(1)) in self.damaged_inodes:
                    with self.lock:
                        self.loaded_damaged.append((pid, m.group(2)))

    def kill_worker(self):
        live = [pid for pid, cmd in self.workers().items()
                if cmd == "nginx: worker process"]
        if not live:
            return
        pid = self.rng.choice(live)
        with self.lock:
            self.kills.append((time.monotonic(), pid))
        os.kill(pid, signal.SIGKILL)

    def chaos(self):
        next_reload = time.monotonic() + self.reload_every
        next_kill = time.monotonic() + self.kill_every / 2
        n = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_reload:
                if n % 2 == 1:
                    self.corrupt()
                n += 1
                self.reload()
                next_reload = time.monotonic() + self.reload_every
            if self.kill_every and now >= next_kill:
                self.kill_worker()
                next_kill = now + self.kill_every
            time.sleep(0.1)

    def sample_rss(self):
        while not self.stop.is_set():
            sample = {}
            for pid, cmd in self.workers().items():
                kb = rss_kb(pid)
                if kb is not None:
                    sample[pid] = kb
            with self.lock:
                self.rss.append((round(time.monotonic() - self.start_time, 1), sample))
            self.stop.wait(1.0)

    # -- run and checks ---------------------------------------------------

    def run(self):
        self.setup()
        self.start_nginx()
        self.start_time = time.monotonic()
        threads = [threading.Thread(target=self.loop, args=(self.one_http,))
                   for _ in range(self.threads)]
        threads += [threading.Thread(target=self.loop, args=(self.one_stream, 0.01)),
                    threading.Thread(target=self.loop, args=(self.slow,)),
                    threading.Thread(target=self.loop, args=(self.slow,)),
                    threading.Thread(target=self.chaos),
                    threading.Thread(target=self.sample_rss)]
        for t in threads:
            t.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in threads:
            t.join(LATENCY_BOUND + 60)
        self.elapsed = time.monotonic() - self.start_time
        return self.check()

    def check(self):
        problems = []
        master_alive = self.nginx.proc.poll() is None
        if not master_alive:
            problems.append(f"the master exited with {self.nginx.proc.returncode}")
        # the shared counter: every answered increment is in it; lost
        # answers (kills) may have incremented it too
        counter = None
        try:
            status, _, body = self.get("/store", {"x-store": "get soak"})
            m = re.match(rb"get 0 \d+ (\d+)", body)
            counter = int(m.group(1)) if m else None
        except Exception as e:
            problems.append(f"reading the shared counter: {e}")
        killed_store = self.counts.get(("store", "killed"), 0)
        if counter is None or not self.incr_ok <= counter <= self.incr_ok + killed_store:
            problems.append(f"shared counter {counter}, {self.incr_ok} increments answered "
                            f"(+{killed_store} lost to kills)")
        self.nginx.stop()
        log = self.nginx.log()
        try:
            with open(self.stderr_file, errors="replace") as f:
                log += f.read()
        except OSError:
            pass
        killed = {pid for _, pid in self.kills}
        for pid, sig in re.findall(r"worker process (\d+) exited on signal (\d+)", log):
            if int(pid) not in killed or sig != "9":
                problems.append(f"worker {pid} exited on signal {sig}")
        for m in re.findall(r"worker process \d+ exited with code [1-9]\d*", log):
            problems.append(m)
        expected = re.compile(r"worker process (\d+) exited on signal 9"
                              r"|shared memory zone \"[^\"]+\" was locked by (\d+)")
        unexpected = []
        for line in log.splitlines():
            if "[alert]" in line or "[emerg]" in line or "[crit]" in line:
                m = expected.search(line)
                if not (m and int(m.group(1) or m.group(2)) in killed):
                    unexpected.append(line)
        problems += [f"log: {line}" for line in unexpected[:20]]
        refused = len(re.findall(r"compile cache entry refused", log))
        if refused < len(self.corruptions):
            problems.append(f"{len(self.corruptions)} cache entries damaged, "
                            f"{refused} refused")
        if self.loaded_damaged:
            problems.append(f"damaged cache entries loaded: {self.loaded_damaged[:5]}")
        not_applied = [r for r in self.reloads if r[2] is None]
        if not_applied:
            problems.append(f"reloads not applied: {not_applied}")
        fails = sum(n for (w, o), n in self.counts.items() if o == "fail")
        if fails:
            problems.append(f"{fails} failed requests")
        # RSS: bounded, and no steady growth (the last quarter's peak within
        # 1.5 times the second quarter's plus 64 MiB)
        peaks = [(t, max(s.values())) for t, s in self.rss if s]
        peak = max((p for _, p in peaks), default=0)
        if peak > RSS_LIMIT_KB:
            problems.append(f"a worker reached {peak} kB RSS")
        q = len(peaks) // 4
        if q >= 2:
            second = max(p for _, p in peaks[q:2 * q])
            last = max(p for _, p in peaks[3 * q:])
            if last > second * 1.5 + 64 * 1024:
                problems.append(f"worker RSS grew: {second} kB -> {last} kB")
        self.report = {
            "seconds": round(self.elapsed, 1),
            "requests": sum(self.counts.values()),
            "by_location": {w: {o: n for (w2, o), n in sorted(self.counts.items()) if w2 == w}
                            for w in sorted({w for w, _ in self.counts})},
            "max_latency_s": {w: round(v, 2) for w, v in sorted(self.latency.items())},
            "reloads": len(self.reloads),
            "reload_applied_s_max": max((r[2] for r in self.reloads if r[2]), default=None),
            "kills": len(self.kills),
            "kill_times_s": [round(k - self.start_time, 2) for k, _ in self.kills],
            "cache_corruptions": [c[1] for c in self.corruptions],
            "cache_entries_refused": refused,
            "damaged_entries_loaded": len(self.loaded_damaged),
            "traps_logged": len(re.findall(r"\[pwasm\] trap: ", log)),
            "cpu_limit_hits": len(re.findall(r"CPU time limit exceeded", log)) // 2,
            # leak.wasm traps only when memory.grow fails
            "memory_limit_hits": len(re.findall(r"\[pwasm\] leak: plugin \"leak\" trapped", log)),
            "shared_counter": counter,
            "increments_answered": self.incr_ok,
            "rss_peak_kb": peak,
            "rss_kb_over_time": [(t, p) for t, p in peaks[::max(1, len(peaks) // 20)]],
            "failures": self.failures[:50],
            "problems": problems,
        }
        return self.report

    def close(self):
        for name in ("upstream", "echo", "mute"):
            if hasattr(self, name):
                getattr(self, name).close()


def run(workdir, seconds, **options):
    """Runs a soak (Soak's options) and cleans up; returns its report."""
    soak = Soak(workdir, seconds, **options)
    try:
        return soak.run()
    finally:
        if getattr(soak, "nginx", None):
            soak.nginx.stop()
        soak.close()


def summary(report):
    lines = [f"soak: {report['seconds']} s, {report['requests']} requests, "
             f"{report['reloads']} reloads (applied within {report['reload_applied_s_max']} s), "
             f"{report['kills']} worker kills, {len(report['cache_corruptions'])} cache entries "
             f"damaged ({report['cache_entries_refused']} refusals logged)",
             f"traps {report['traps_logged']}, CPU limit {report['cpu_limit_hits']}, "
             f"memory limit {report['memory_limit_hits']}, shared counter "
             f"{report['shared_counter']} ({report['increments_answered']} answered)"]
    for where, outcomes in report["by_location"].items():
        lines.append(f"  {where:14} {outcomes}  max {report['max_latency_s'][where]} s")
    lines.append("  worker RSS peak (kB) over time: " +
                 " ".join(f"{t:.0f}s:{p}" for t, p in report["rss_kb_over_time"]))
    for f in report["failures"]:
        lines.append(f"  FAIL {f}")
    for p in report["problems"]:
        lines.append(f"  PROBLEM {p}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("SOAK_SECONDS") or 600))
    ap.add_argument("--dir", default=os.path.join(BUILD, "soak"))
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--reload-every", type=float, default=5.0, help="seconds")
    ap.add_argument("--kill-every", type=float, default=15.0,
                    help="seconds between worker kills; 0: none")
    args = ap.parse_args()
    report = run(args.dir, args.seconds, threads=args.threads, seed=args.seed,
                 reload_every=args.reload_every, kill_every=args.kill_every)
    with open(os.path.join(args.dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(summary(report))
    print(f"report: {os.path.join(args.dir, 'report.json')}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
