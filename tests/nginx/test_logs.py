"""Plugin logs reach nginx's error log, prefixed, at the matching level;
the stream lifecycle runs in Envoy's order."""

import re

LIFECYCLE = """
    proxy_wasm_module lifecycle @WASM:tests/plugins/lifecycle.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm lifecycle;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_plugin_logs_are_prefixed_at_info(nginx):
    nginx.start("""
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm add_header config=x-a=b; proxy_pass http://@UPSTREAM@; }
    }
""")
    m = nginx.wait_log(r"\[info\] \d+#\d+: \[pwasm\] add_header: .*x-a: b.*")
    assert m, nginx.log()


def test_plugin_log_levels_and_request_context(nginx):
    nginx.start("""
    proxy_wasm_module trap @WASM:tests/plugins/trap.wasm@;
    proxy_wasm_module deny @WASM:examples/deny.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /trap { proxy_wasm trap; proxy_pass http://@UPSTREAM@; }
        location /deny { proxy_wasm deny config=x-k; proxy_pass http://@UPSTREAM@; }
    }
""")
    nginx.request("/trap", headers={"x-trap": "unreachable"})
    nginx.request("/deny")
    # trap.wasm logs its intent at INFO, from a request: nginx adds the
    # request's context to the line
    m = nginx.wait_log(r"\[info\] .*\[pwasm\] trap: trap: unreachable in proxy_on_request_headers"
                       r".*client: 127\.0\.0\.1.*request: \"GET /trap HTTP/1\.1\"")
    assert m, nginx.log()
    # deny's "no header" line is DEBUG: hidden at error_log level info
    assert "[pwasm] deny: context" not in nginx.log()


def test_debug_level_shows_plugin_debug_lines(nginx):
    nginx.start("""
    proxy_wasm_module deny @WASM:examples/deny.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm deny config=x-k; proxy_pass http://@UPSTREAM@; }
    }
""", level="debug")
    nginx.request("/")
    assert nginx.wait_log(r"\[debug\] .*\[pwasm\] deny: context \d+: no x-k header"), \
        nginx.log()[-3000:]


def test_log_level_follows_error_log(nginx):
    nginx.start("""
    proxy_wasm_module hostcalls @WASM:tests/plugins/hostcalls.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm hostcalls; proxy_pass http://@UPSTREAM@; }
    }
""")
    nginx.request("/", headers={"x-test": "log_level"})
    assert nginx.wait_log(r"result: log_level 0 2\b"), nginx.log()  # info = 2


def test_lifecycle_order_for_one_request(nginx):
    nginx.start(LIFECYCLE)
    assert nginx.request("/").status == 200
    nginx.stop()  # flushes everything, root contexts end too
    log = nginx.log()
    worker = log[log.index("start worker process"):]
    calls = re.findall(r"lifecycle: proxy_on_(\w+) (\d+)(?: (\d+))?", worker)
    # the stream context is the one created with a non-zero parent
    streams = [c for c in calls if c[0] == "context_create" and c[2] not in ("", "0")]
    assert len(streams) == 1, calls
    ctx = streams[0][1]
    order = [name for name, cid, _ in calls if cid == ctx]
    # the body comes in one or more calls (the last with end_of_stream 1)
    order = [n for i, n in enumerate(order) if i == 0 or order[i - 1] != n]
    assert order == ["context_create", "request_headers", "response_headers",
                     "response_body", "log", "done", "delete"]
    bodies = [c for c in calls if c[0] == "response_body" and c[1] == ctx]
    assert bodies, calls
    assert re.search(r"proxy_on_response_body %s \d+ 1" % ctx, worker)
    # the root context: created, started and configured at worker start,
    # done and deleted at worker exit
    root = streams[0][2]
    assert [name for name, cid, _ in calls if cid == root] == \
        ["context_create", "vm_start", "configure", "done", "delete"]


def test_lifecycle_header_counts(nginx):
    nginx.start(LIFECYCLE)
    nginx.request("/", headers={"x-one": "1", "x-two": "2"})
    m = nginx.wait_log(r"proxy_on_request_headers \d+ (\d+) (\d+)")
    # :method :path :authority :scheme + Host, Accept-Encoding, x-one, x-two
    # (http.client sends Host and Accept-Encoding)
    assert m and m.group(1) == "8" and m.group(2) == "1", nginx.log()


def test_server_level_return_runs_response_callbacks_only(nginx):
    # a server-level "return" answers before any location (and before the
    # rewrite phase where request headers run): the plugin still sees the
    # response, and its stream still ends
    nginx.start("""
    proxy_wasm_module lifecycle @WASM:tests/plugins/lifecycle.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        proxy_wasm lifecycle;
        return 204;
    }
""")
    assert nginx.request("/").status == 204
    nginx.stop()
    log = nginx.log()
    worker = log[log.index("start worker process"):]
    calls = re.findall(r"lifecycle: proxy_on_(\w+) (\d+)(?: (\d+))?", worker)
    ctx = [c[1] for c in calls if c[0] == "context_create" and c[2] not in ("", "0")]
    assert len(ctx) == 1, calls
    assert [name for name, cid, _ in calls if cid == ctx[0]] == \
        ["context_create", "response_headers", "log", "done", "delete"]
