"""Pseudo-header writes (:path, :authority, :method, :status), response
trailers, and VMs / root contexts (filter.wasm, lifecycle.wasm)."""

import re
import subprocess

from conftest import free_port

CONF = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        listen 127.0.0.1:@PORT2@ http2;
        location / {
            proxy_wasm filter;
            proxy_set_header Host $host;
            proxy_pass http://@UPSTREAM@;
        }
        location /moved {
            proxy_wasm filter config=reqh.header=:path:/target/x?y=1;
            rewrite ^ /not-here;        # skipped: the location is chosen again
            proxy_pass http://127.0.0.1:1;
        }
        location /target {
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def start(nginx):
    port2 = free_port()
    nginx.start(CONF.replace("@PORT2@", str(port2)))
    return port2


def test_path_rewrite_reaches_the_upstream(nginx, upstream):
    start(nginx)
    r = nginx.request("/orig?a=b", headers={"x-pw": "reqh.header=:path:/new/p%20q?x=1 "
                                                    "reqh.headers"})
    assert r.status == 200
    assert upstream.requests[-1][1] == "/new/p%20q?x=1"


def test_path_rewrite_chooses_the_location_again(nginx, upstream):
    # like Envoy clearing its route cache: /moved is answered by /target
    start(nginx)
    r = nginx.request("/moved")
    assert r.status == 200 and r.body == b"upstream ok\n"
    assert upstream.requests[-1][1] == "/target/x?y=1"


def test_invalid_paths_are_refused(nginx, upstream):
    start(nginx)
    nginx.request("/p", headers={"x-pw": "reqh.header=:path:/a/../etc reqh.header=:path:rel"})
    log = nginx.log()
    assert re.search(r"action reqh.header=:path:/a/../etc 2", log)   # BadArgument
    assert re.search(r"action reqh.header=:path:rel 2", log)
    assert upstream.requests[-1][1] == "/p"


def test_authority_and_method_rewrites(nginx, upstream):
    start(nginx)
    r = nginx.request("/m", headers={"x-pw": "reqh.header=:authority:other.test "
                                             "reqh.header=:method:PUT reqh.headers"})
    assert r.status == 200
    method, path, headers, _ = upstream.requests[-1]
    assert method == "PUT"
    assert upstream.header_values("host") == ["other.test"]
    # the plugin reads back what it wrote
    assert re.search(r"filter: map 0 0 :method=PUT :path=/m :authority=other.test ", nginx.log())


def test_status_rewrite(nginx):
    start(nginx)
    r = nginx.request("/", headers={"x-pw": "resph.header=:status:201"})
    assert r.status == 201 and r.body == b"upstream ok\n"


def curl_headers(port, *args):
    p = subprocess.run(["curl", "-sS", "-D", "-", "--max-time", "20", *args,
                        f"http://127.0.0.1:{port}/"], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode("latin-1")


def test_response_trailers_http11_chunked_and_http2(nginx):
    port2 = start(nginx)
    rules = "respb.trailer=x-from-body:1 respt.trailers respt.trailer=x-from-trailers:2"
    for port, extra in ((nginx.port, []), (port2, ["--http2-prior-knowledge"])):
        out = curl_headers(port, "-H", "x-pw: " + rules, *extra)
        body_and_trailers = out.split("\r\n\r\n", 1)[1]
        assert body_and_trailers.startswith("upstream ok\n")
        trailers = body_and_trailers[len("upstream ok\n"):]
        assert "x-from-body: 1" in trailers and "x-from-trailers: 2" in trailers, out
    # on_response_trailers saw the trailers added from on_response_body
    assert re.search(r"filter: respt ctx=\d+ size=1 eos=1", nginx.log())
    assert re.search(r"filter: map 3 0 x-from-body=1", nginx.log())


def test_no_trailer_callback_without_trailers(nginx):
    start(nginx)
    nginx.request("/")
    assert "filter: respt" not in nginx.log()


def test_request_trailers_map_is_not_available(nginx):
    start(nginx)
    nginx.request("/", headers={"x-pw": "reqh.headers"})
    # request trailers (map 1): nginx 1.22 drops them
    nginx.request("/", headers={"x-pw": "respb.trailers"})
    assert re.search(r"filter: map 3 0", nginx.log())


def test_several_root_ids_of_one_module_share_one_vm(nginx, upstream):
    nginx.start("""
    proxy_wasm_module lifecycle @WASM:tests/plugins/lifecycle.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /a {
            proxy_wasm lifecycle root_id=one config=first;
            proxy_wasm lifecycle root_id=two config=second;
            proxy_pass http://@UPSTREAM@;
        }
        location /b {
            proxy_wasm lifecycle root_id=two config=second;
            proxy_pass http://@UPSTREAM@;
        }
    }
""")
    for path in ("/a", "/b", "/a"):
        assert nginx.request(path).status == 200
    log = nginx.log()
    worker = log[log.index("start worker process"):]
    roots = re.findall(r"proxy_on_configure (\d+) \d+ config=(\w+)", worker)
    # each (root_id, configuration) configured once, in one VM: ids from one
    # counter, stream contexts created under both roots
    assert sorted(c for _, c in roots) == ["first", "second"]
    ids = {c: rid for rid, c in roots}
    assert ids["first"] != ids["second"]
    parents = re.findall(r"proxy_on_context_create \d+ (\d+)", worker)
    assert parents.count(ids["first"]) == 2 and parents.count(ids["second"]) == 3
    assert len(re.findall(r"proxy_on_vm_start", worker)) == 2   # per root (cpp-host)


def test_declarations_of_one_module_and_vm_id_share_the_vm(nginx):
    nginx.start("""
    proxy_wasm_module a @WASM:tests/plugins/lifecycle.wasm@ vm_id=shared;
    proxy_wasm_module b @WASM:tests/plugins/lifecycle.wasm@ vm_id=shared;
    proxy_wasm_module c @WASM:tests/plugins/lifecycle.wasm@ vm_id=other;
    server {
        listen 127.0.0.1:@PORT@;
        location /a { proxy_wasm a config=A; return 200; }
        location /b { proxy_wasm b config=B; return 200; }
        location /c { proxy_wasm c config=C; return 200; }
    }
""")
    for c in "ABC":
        assert nginx.wait_log(r"start worker process[\s\S]*proxy_on_configure \d+ \d+ config=" + c)
    log = nginx.log()
    worker = log[log.index("start worker process"):]
    ids = dict((c, int(i)) for i, c in
               re.findall(r"proxy_on_configure (\d+) \d+ config=(\w)", worker))
    # a and b: root contexts 1 and 2 of one VM; c: its own VM, from 1 again
    assert sorted([ids["A"], ids["B"]]) == [1, 2] and ids["C"] == 1, ids
    assert re.search(r"\[pwasm\] b: lifecycle: proxy_on_configure", worker)
