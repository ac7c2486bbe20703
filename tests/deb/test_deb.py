"""The Debian packages of `make deb` (build/deb/*.deb): lintian, then an
install on this machine, use, and purge.

The install test installs the four packages with apt-get, starts Debian's
/usr/sbin/nginx with its own prefix, configuration and loopback port (not
the system service) loading the modules through the modules-enabled
snippets the packages made, with plugins built against the installed C SDK
(an HTTP one, a TCP one in stream{} in front of an echo server) and the
packaged default compile cache (/var/cache/pwasm); uses the
installed pwasm tool and pkg-config file; then purges the packages and
checks that nothing of them is left. It needs root, and is skipped (with the
reason) when not root, when one of the packages is already installed or
/var/cache/pwasm already exists: it leaves the machine as it found it.

Run with `make test-deb` (builds the packages first), or
`/usr/bin/python3 -m pytest tests/deb` after `make deb`.
"""

import glob
import http.client
import os
import re
import signal
import socket
import socketserver
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PWASM_BUILD") or os.path.join(ROOT, "build")
DEB_DIR = os.path.join(BUILD, "deb")
NGINX = "/usr/sbin/nginx"
PACKAGES = ["libnginx-mod-http-proxy-wasm", "libnginx-mod-stream-proxy-wasm", "pwasm",
            "pwasm-dev"]
CACHE = "/var/cache/pwasm"
ENABLED = "/etc/nginx/modules-enabled"
AVAILABLE = "/usr/share/nginx/modules-available"


def pwasm_version():
    with open(os.path.join(ROOT, "include", "pwasm.h")) as f:
        return re.search(r'#define PWASM_VERSION_STRING "([^"]+)"', f.read()).group(1)


def debs():
    found = {}
    for path in glob.glob(os.path.join(DEB_DIR, "*.deb")):
        found[os.path.basename(path).split("_")[0]] = path
    missing = [p for p in PACKAGES if p not in found]
    if missing:
        pytest.fail(f"{DEB_DIR} lacks {', '.join(missing)}: run `make deb`")
    return found


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{cmd} exited with {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def field(deb, name):
    return run(["dpkg-deb", "-f", deb, name]).strip()


def test_changelog_agrees_with_pwasm_h():
    v = run(["dpkg-parsechangelog", "-l", os.path.join(ROOT, "debian", "changelog"), "-S",
             "Version"]).strip()
    assert v == pwasm_version() or v.startswith(pwasm_version() + "-"), \
        f"debian/changelog {v}, include/pwasm.h {pwasm_version()}"


def test_packages_are_versioned_from_pwasm_h():
    version = pwasm_version()
    for pkg, deb in debs().items():
        v = field(deb, "Version")
        assert v == version or v.startswith(version + "-"), f"{pkg} is {v}, pwasm.h {version}"


def test_module_packages_depend_on_the_nginx_abi_they_were_built_for():
    # nginx-dev's record of the ABI of the nginx our modules compiled against
    with open("/usr/share/nginx/src/debian/libnginx-mod.abisubstvars") as f:
        abi = re.search(r"^nginx:abi=(\S+)", f.read(), re.M).group(1)
    found = debs()
    for pkg in PACKAGES[:2]:
        depends = [d.strip() for d in field(found[pkg], "Depends").split(",")]
        assert abi in depends, f"{pkg}: {depends}"
        assert "wabt" in depends
    assert "libnginx-mod-stream" in field(found[PACKAGES[1]], "Depends")


def test_lintian_reports_no_error():
    changes = glob.glob(os.path.join(DEB_DIR, "*.changes"))
    assert len(changes) == 1, f"{DEB_DIR}: {changes}: run `make deb`"
    p = subprocess.run(["lintian", "--fail-on", "error", changes[0]], capture_output=True,
                       text=True, timeout=600)
    print(p.stdout + p.stderr)  # the warnings, in pytest's report with -s / on failure
    assert p.returncode == 0, p.stdout + p.stderr
    assert not re.search(r"^E: ", p.stdout, re.M), p.stdout


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg], capture_output=True,
                       text=True)
    return p.returncode == 0 and "not-installed" not in p.stdout


def apt_get(*args):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return run(["apt-get", "-y", "-q", "--no-install-recommends",
                "-o", "DPkg::Lock::Timeout=300", *args], env=env)


def wait_port(proc, port, log):
    deadline = time.time() + 300  # a cold cache compiles the plugin first
    while time.time() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"nginx exited with {proc.returncode}: {err}\n{open(log).read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("nginx did not listen")


class Echo:
    """A TCP server on 127.0.0.1 sending back what it reads, until EOF."""

    def __init__(self):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                while True:
                    data = self.request.recv(65536)
                    if not data:
                        break
                    self.request.sendall(data)
                self.request.shutdown(socket.SHUT_WR)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


CONF = """\
# the packages' snippets, as /etc/nginx/nginx.conf includes them
include {enabled}/50-mod-stream.conf;
include {enabled}/50-mod-http-proxy-wasm.conf;
include {enabled}/70-mod-stream-proxy-wasm.conf;
daemon off;
master_process on;
worker_processes 1;
user www-data;
error_log {prefix}/logs/error.log info;
pid {prefix}/logs/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    proxy_wasm_module add_header {wasm};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_wasm add_header config=x-pwasm-deb=installed;
            return 200 "ok\\n";
        }}
    }}
}}
stream {{
    proxy_wasm_module tcp {tcp_wasm};
    server {{
        listen 127.0.0.1:{stream_port};
        proxy_wasm tcp config=upper;
        proxy_half_close on;
        proxy_pass 127.0.0.1:{echo_port};
    }}
}}
"""

TINY_HOST = r"""
#include <stdio.h>
#include <pwasm.h>

int main(void) {
    char err[256];
    pw_runtime *rt;
    if (pw_runtime_new(NULL, &rt, err, sizeof err) != PW_OK) {
        fprintf(stderr, "pw_runtime_new: %s\n", err);
        return 1;
    }
    printf("pwasm %s\n", PWASM_VERSION_STRING);
    pw_runtime_free(rt);
    return 0;
}
"""


def package_files(pkgs):
    """Every file and symlink the packages installed (not directories)."""
    files = []
    for pkg in pkgs:
        for line in run(["dpkg", "-L", pkg]).splitlines():
            if os.path.islink(line) or os.path.isfile(line):
                files.append(line)
    return files


def test_install_use_and_purge(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the install test installs packages: it needs root (CI runs it as root)")
    there = [p for p in PACKAGES if installed(p)]
    if there:
        pytest.skip(f"{', '.join(there)} already installed: not touching them "
                    f"(purge them to run this test)")
    if os.path.exists(CACHE):
        pytest.skip(f"{CACHE} exists (not ours): the purge would remove it")
    found = debs()
    enabled_before = sorted(os.listdir(ENABLED))
    our_dirs = [d for d in ["/usr/share/pwasm", "/usr/include/proxy_wasm"] +
                [f"/usr/share/doc/{p}" for p in PACKAGES] if not os.path.exists(d)]
    proc = echo = None
    try:
        apt_get("install", *[found[p] for p in PACKAGES])
        assert all(installed(p) for p in PACKAGES)

        # Debian's module layout: .so, snippet, modules-enabled symlink
        for name, prio, so in (("http-proxy-wasm", 50, "ngx_http_proxy_wasm_module.so"),
                               ("stream-proxy-wasm", 70, "ngx_stream_proxy_wasm_module.so")):
            assert os.path.isfile(f"/usr/lib/nginx/modules/{so}")
            with open(f"{AVAILABLE}/mod-{name}.conf") as f:
                assert f.read().strip() == f"load_module modules/{so};"
            link = f"{ENABLED}/{prio}-mod-{name}.conf"
            assert os.readlink(link) == f"{AVAILABLE}/mod-{name}.conf"
        st = os.stat(CACHE)
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o755)
        files = package_files(PACKAGES)

        # A plugin built with the installed C SDK (pwasm-dev's pkg-config)
        sdk_cflags = run(["pkg-config", "--variable=sdk_cflags", "pwasm"]).split()
        sdk_obj = run(["pkg-config", "--variable=sdk_obj", "pwasm"]).strip()
        assert sdk_obj.startswith("/usr/share/pwasm/"), sdk_obj
        wasm = str(tmp_path / "add_header.wasm")
        tcp_wasm = str(tmp_path / "tcp_stream.wasm")
        for src, out in (("examples/c/add_header/add_header.c", wasm),
                         ("tests/nginx/plugins/tcp_stream.c", tcp_wasm)):
            run(["clang", "--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall",
                 "-Werror", *sdk_cflags, os.path.join(ROOT, src), sdk_obj, "-o", out])

        # The installed tool runs it
        out = run(["/usr/bin/pwasm", "--version"])
        assert pwasm_version() in out
        out = run(["/usr/bin/pwasm", "run", wasm, "--config", "x-cli=ran"],
                  env=dict(os.environ, PWASM_CACHE_DIR=""))
        assert re.search(r"^ +x-cli: ran$", out, re.M), out

        # An embedder links the installed library through pkg-config
        src = tmp_path / "host.c"
        src.write_text(TINY_HOST)
        flags = run(["pkg-config", "--cflags", "--libs", "pwasm"]).split()
        run(["cc", "-std=c11", "-Wall", "-Werror", str(src), *flags, "-o",
             str(tmp_path / "host")])
        assert run([str(tmp_path / "host")]).strip() == f"pwasm {pwasm_version()}"

        # Debian's nginx with the installed modules, own prefix and port
        prefix = tmp_path / "nginx"
        for d in ("logs", "tmp"):
            (prefix / d).mkdir(parents=True)
        port, stream_port = free_port(), free_port()
        echo = Echo()
        conf = prefix / "nginx.conf"
        conf.write_text(CONF.format(enabled=ENABLED, prefix=prefix, wasm=wasm, port=port,
                                    tcp_wasm=tcp_wasm, stream_port=stream_port,
                                    echo_port=echo.port))
        # the snippets say modules/X.so, relative to the prefix
        os.symlink("/usr/lib/nginx/modules", prefix / "modules")
        env = {k: v for k, v in os.environ.items() if k != "PWASM_CACHE_DIR"}
        log = str(prefix / "logs" / "error.log")
        proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                text=True)
        wait_port(proc, port, log)
        for _ in range(3):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/")
            r = c.getresponse()
            body = r.read()
            c.close()
            assert (r.status, body) == (200, b"ok\n")
            assert r.getheader("x-pwasm-deb") == "installed"
        # the stream module: downstream bytes upper-cased, upstream's prefixed
        with socket.create_connection(("127.0.0.1", stream_port), timeout=10) as c:
            c.sendall(b"hello deb\n")
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                d = c.recv(4096)
                if not d:
                    break
                got += d
        assert got == b"<HELLO DEB\n"
        # compiled into the packaged default cache (no proxy_wasm_cache_dir)
        # (the two plugins: add_header and tcp_stream)
        assert len(glob.glob(f"{CACHE}/*.so")) >= 2, os.listdir(CACHE)
        assert len(glob.glob(f"{CACHE}/*.sha256")) >= 2, os.listdir(CACHE)
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=30)
        proc.stderr.close()
        proc = None

        apt_get("purge", *PACKAGES)
        assert not [p for p in PACKAGES if installed(p)]
        left = [f for f in files if os.path.lexists(f)]
        assert not left, f"left after purge: {left}"
        assert not os.path.exists(CACHE)
        for d in our_dirs:
            assert not os.path.exists(d), f"{d} left after purge"
        assert sorted(os.listdir(ENABLED)) == enabled_before
    finally:
        if echo is not None:
            echo.close()
        if proc is not None:
            proc.kill()
            proc.wait()
        there = [p for p in PACKAGES if installed(p)]
        if there:
            apt_get("purge", *there)
