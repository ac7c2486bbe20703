"""The example plugins behave in nginx as documented."""

ADD_HEADER = """
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm add_header config=x-hello=world;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_add_header_adds_a_response_header(nginx, upstream):
    nginx.start(ADD_HEADER)
    r = nginx.request("/some/path?q=1")
    assert r.status == 200
    assert r.body == b"upstream ok\n"
    assert r.header_values("x-hello") == ["world"]
    # the upstream response's own headers are still there
    assert r.header("x-upstream") == "python"
    assert r.header("content-type") == "text/plain"
    assert upstream.requests[-1][1] == "/some/path?q=1"


DENY = """
    proxy_wasm_module deny @WASM:examples/deny.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /admin {
            proxy_wasm deny config=x-api-key;
            proxy_pass http://@UPSTREAM@;
        }
        location /static {
            proxy_wasm deny config=x-api-key;
            return 200 "static\\n";
        }
    }
"""


def test_deny_answers_403_without_the_header(nginx, upstream):
    nginx.start(DENY)
    r = nginx.request("/admin")
    assert r.status == 403
    assert r.body == b"forbidden\n"
    assert r.header("content-type") == "text/plain"
    assert r.header("content-length") == str(len(b"forbidden\n"))
    assert upstream.requests == [], "a denied request must not reach the upstream"


def test_deny_lets_the_request_through_with_the_header(nginx, upstream):
    nginx.start(DENY)
    r = nginx.request("/admin", headers={"X-Api-Key": "secret"})
    assert r.status == 200
    assert r.body == b"upstream ok\n"
    assert len(upstream.requests) == 1
    assert upstream.header_values("x-api-key") == ["secret"]


def test_deny_runs_before_the_locations_return(nginx):
    # request headers run first in the rewrite phase: a location's own
    # "return" cannot bypass the plugin
    nginx.start(DENY)
    assert nginx.request("/static").status == 403
    r = nginx.request("/static", headers={"x-api-key": ""})
    assert (r.status, r.body) == (200, b"static\n")


def test_deny_keeps_the_connection_usable(nginx):
    nginx.start(DENY)
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        for expected in (403, 200, 403):
            headers = {"x-api-key": "k"} if expected == 200 else {}
            conn.request("POST", "/admin", body=b"some body", headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
    finally:
        conn.close()


AS_ADD_HEADER = """
    proxy_wasm_module as @WASM:examples/as_add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /as/ {
            proxy_wasm as root_id=add_header config=x-as-plugin=hello;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_assemblyscript_plugin(nginx, upstream):
    nginx.start(AS_ADD_HEADER)
    r = nginx.request("/as/thing")
    assert r.status == 200
    assert r.header_values("x-as-plugin") == ["hello"]
    # the request header the plugin adds reaches the upstream
    assert upstream.header_values("x-as-request") == ["1"]
