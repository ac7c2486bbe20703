"""Fixtures for the nginx integration tests.

Each test starts a real nginx (Debian's /usr/sbin/nginx, or $PWASM_NGINX)
that loads build/ngx_http_proxy_wasm_module.so, with a generated
configuration in a temporary prefix, one worker, on free loopback ports,
and stops it afterwards. A small Python HTTP server plays the upstream and
records the request headers it receives.

Run with Debian's interpreter: `make test-nginx`, or
`/usr/bin/python3 -m pytest tests/nginx` after `make nginx-module
examples-c examples-as test-plugins`.
"""

import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PWASM_BUILD") or os.path.join(ROOT, "build")
NGINX = os.environ.get("PWASM_NGINX") or "/usr/sbin/nginx"
# Our two modules: build/ by default, or $PWASM_MODULE_DIR (modules built
# against another nginx with `make NGINX_SRC=... NGINX_MODULE_DIR=...`).
MODULE_DIR = os.path.abspath(os.environ.get("PWASM_MODULE_DIR") or BUILD)
MODULE = os.path.join(MODULE_DIR, "ngx_http_proxy_wasm_module.so")
STREAM_MODULE = os.path.join(MODULE_DIR, "ngx_stream_proxy_wasm_module.so")
# Debian's stream subsystem, a dynamic module loaded before ours
NGINX_STREAM_CORE = os.path.abspath(os.environ.get("PWASM_NGINX_STREAM") or
    "/usr/lib/nginx/modules/ngx_stream_module.so")
# Compiled plugins are cached here, shared with the other test suites.
CACHE = os.environ.get("PWASM_CACHE_DIR") or os.path.join(BUILD, "cache")


def wasm(rel):
    """Absolute path of a built plugin, e.g. wasm("examples/deny.wasm")."""
    path = os.path.join(BUILD, rel)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run `make examples-c examples-as test-plugins`")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """An HTTP/1.0 upstream on 127.0.0.1 that answers 200 "upstream ok\\n"
    (or `size` bytes for a query ?size=N, the same chunked (HTTP/1.1) for
    ?chunked=N, or the request body for a path starting with /echo) and
    keeps every request's
    (method, path, [(name, value), ...], body)."""

    def __init__(self):
        self.requests = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_any(self):
                length = int(self.headers.get("content-length") or 0)
                received = self.rfile.read(length) if length else b""
                upstream.requests.append((self.command, self.path, list(self.headers.items()),
                                          received))
                m = re.search(r"[?&]size=(\d+)", self.path)
                c = re.search(r"[?&]chunked=(\d+)", self.path)
                if c:
                    self.send_chunked(int(c.group(1)))
                    return
                if self.path.startswith("/echo"):
                    body = received
                elif m:
                    n = int(m.group(1))
                    body = (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]
                else:
                    body = b"upstream ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Upstream", "python")
                self.end_headers()
                self.wfile.write(body)

            def send_chunked(self, n):
                # HTTP/1.1 chunked, two chunks: the end of the body is only
                # known from the terminating chunk
                body = (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]
                self.protocol_version = "HTTP/1.1"
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                for part in (body[:n // 2], body[n // 2:]):
                    if part:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def headers(self, index=-1):
        """Headers of one received request, as a list of (lower name, value)."""
        return [(k.lower(), v) for k, v in self.requests[index][2]]

    def header_values(self, name, index=-1):
        return [v for k, v in self.headers(index) if k == name.lower()]

    def index_of(self, path_prefix):
        """Index of the one received request whose path starts with
        path_prefix (for tests where other requests reach the upstream
        concurrently, e.g. the one that resumes a paused request)."""
        found = [i for i, r in enumerate(self.requests) if r[1].startswith(path_prefix)]
        assert len(found) == 1, [r[1] for r in self.requests]
        return found[0]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(name lower-cased, value)] in wire order
        self.body = body

    def header_values(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name):
        values = self.header_values(name)
        return values[0] if values else None


CONF_TEMPLATE = """\
load_module @MODULE@;
daemon off;
master_process on;
worker_processes @WORKERS@;
@USER@
error_log @PREFIX@/logs/error.log @LEVEL@;
pid @PREFIX@/logs/nginx.pid;

events {
    worker_connections 128;
}

http {
    access_log off;
    client_body_temp_path @PREFIX@/tmp/body;
    proxy_temp_path @PREFIX@/tmp/proxy;
    fastcgi_temp_path @PREFIX@/tmp/fastcgi;
    uwsgi_temp_path @PREFIX@/tmp/uwsgi;
    scgi_temp_path @PREFIX@/tmp/scgi;

@HTTP@
}
@STREAM@
"""

STREAM_TEMPLATE = """
stream {
@BODY@
}
"""


class Nginx:
    """One nginx instance with a generated configuration.

    `http` is the inside of the http{} block; in it, @PORT@ is nginx's
    listening port, @UPSTREAM@ the upstream's "127.0.0.1:port" and
    @WASM:rel/path.wasm@ the absolute path of a built plugin."""

    def __init__(self, prefix, upstream):
        self.prefix = str(prefix)
        self.upstream = upstream
        self.port = free_port()
        self.proc = None
        for d in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)
        self.conf = os.path.join(self.prefix, "conf", "nginx.conf")
        self.stream_first = False  # the stream{} block before http{}
        self.error_log = os.path.join(self.prefix, "logs", "error.log")

    def write_conf(self, http, level="info", workers=1, stream=None):
        """stream: the inside of a stream{} block (with the same
        substitutions), which loads Debian's ngx_stream_module.so and
        build/ngx_stream_proxy_wasm_module.so; None: no stream{}."""
        def subst(text):
            text = re.sub(r"@WASM:([^@]+)@", lambda m: wasm(m.group(1)), text)
            text = text.replace("@PORT@", str(self.port))
            return text.replace("@UPSTREAM@", f"127.0.0.1:{self.upstream.port}")
        body = subst(http)
        module = MODULE
        stream_block = ""
        if stream is not None:
            if not os.path.exists(STREAM_MODULE):
                pytest.fail(f"{STREAM_MODULE} is missing: run `make nginx-module`")
            module = f"{NGINX_STREAM_CORE};\nload_module {MODULE};\nload_module {STREAM_MODULE}"
            stream_block = STREAM_TEMPLATE.replace("@BODY@", subst(stream))
        template = CONF_TEMPLATE
        if self.stream_first:
            template = template.replace("@STREAM@", "").replace("\nhttp {", "\n@STREAM@\nhttp {")
        conf = (template.replace("@MODULE@", module)
                .replace("@STREAM@", stream_block)
                .replace("@USER@", "user root root;" if os.geteuid() == 0 else "")
                .replace("@PREFIX@", self.prefix)
                .replace("@LEVEL@", level)
                .replace("@WORKERS@", str(workers))
                .replace("@HTTP@", body))
        with open(self.conf, "w") as f:
            f.write(conf)

    def env(self):
        env = dict(os.environ)
        env["PWASM_CACHE_DIR"] = CACHE
        return env

    def test_config(self, http, level="info", stream=None):
        """Runs `nginx -t`; returns (returncode, stderr text)."""
        self.write_conf(http, level, stream=stream)
        p = subprocess.run([NGINX, "-t", "-p", self.prefix, "-c", self.conf, "-e", "stderr"],
                           capture_output=True, text=True, env=self.env(), timeout=300)
        return p.returncode, p.stderr

    def start(self, http, level="info", workers=1, stream=None):
        if not os.path.exists(MODULE):
            pytest.fail(f"{MODULE} is missing: run `make nginx-module`")
        self.write_conf(http, level, workers, stream)
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", self.conf, "-e", "stderr"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env())
        deadline = time.time() + 300  # a cold compile cache compiles every plugin
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                pytest.fail(f"nginx exited with {self.proc.returncode}:\n{err.decode()}\n"
                            f"{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("nginx did not start listening")
        # The listening socket exists before the workers: wait for their
        # start-up lines to make the log deterministic.
        deadline = time.time() + 30
        while (len(re.findall(r"start worker process", self.log())) < workers
               and time.time() < deadline):
            time.sleep(0.05)
        return self

    def reload(self, http, level="info", workers=1, stream=None):
        """`nginx -s reload` (SIGHUP) with a new configuration; waits for the
        new workers' start-up lines and for the old workers to exit (so that
        no old worker answers a request after it). False on a timeout."""
        old = re.findall(r"start worker process (\d+)", self.log())
        self.write_conf(http, level, workers, stream)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60
        while time.time() < deadline:
            log = self.log()
            if (len(re.findall(r"start worker process", log)) >= len(old) + workers
                    and all(f"worker process {pid} exited" in log for pid in old)):
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers run exit_process
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
            self.proc.stderr.close()
        self.proc = None

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0):
        """Waits until the error log matches `pattern`; returns the match."""
        deadline = time.time() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m or time.time() > deadline:
                return m
            time.sleep(0.05)

    def request(self, path, method="GET", headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data)
        finally:
            conn.close()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


@pytest.fixture
def nginx(tmp_path, upstream):
    n = Nginx(tmp_path / "nginx", upstream)
    yield n
    n.stop()


def children(master):
    """{pid: command line} of the processes whose parent is `master` (an
    nginx master's workers: "nginx: worker process", "... is shutting
    down")."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != master:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[int(pid)] = f.read().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
    return found


def rss_kb(pid):
    """VmRSS of a process in kB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
    except (OSError, AttributeError):
        return None
