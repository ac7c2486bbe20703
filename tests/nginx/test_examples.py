"""The example plugins behave in nginx as documented."""

import re

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


BODY_EXAMPLES = """
    proxy_wasm_module body_replace @WASM:examples/body_replace.wasm@;
    proxy_wasm_module auth_pause @WASM:examples/auth_pause.wasm@;
    proxy_wasm_module logger @WASM:examples/logger.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        client_max_body_size 16m;
        location /replace {
            proxy_wasm body_replace config=upstream=downstream;
            proxy_pass http://@UPSTREAM@;
        }
        location /auth {
            proxy_wasm auth_pause config=s3cret;
            proxy_wasm logger;
            proxy_pass http://@UPSTREAM@/echo;
        }
    }
"""


def test_body_replace_rewrites_the_response(nginx):
    nginx.start(BODY_EXAMPLES)
    r = nginx.request("/replace")
    assert r.status == 200 and r.body == b"downstream ok\n"
    # buffered whole: exact length
    assert r.header("content-length") == str(len(b"downstream ok\n"))


def test_auth_pause_header_and_body_tokens(nginx, upstream):
    # on_request_headers pauses requests with a body; the body callbacks
    # still see the body, and the plugin resumes the request (or answers
    # 401) from there
    nginx.start(BODY_EXAMPLES)
    assert nginx.request("/auth", headers={"authorization": "Bearer s3cret"}).status == 200
    assert nginx.request("/auth").status == 401
    r = nginx.request("/auth", method="POST", body=b"x" * 100000 + b"s3cret" + b"y" * 10)
    assert r.status == 200 and len(r.body) == 100016
    assert upstream.requests[-1][3].endswith(b"s3crety" + b"y" * 9)
    r = nginx.request("/auth", method="POST", body=b"no token here")
    assert r.status == 401
    # only the two authorized requests went upstream
    assert len(upstream.requests) == 2
    # the logger after it saw every request, with its final status (the
    # refused ones too: its context is created at the log phase, as Envoy
    # does for a filter the request never reached)
    assert nginx.wait_log(r"(?s)(logger: (?:GET|POST) /auth \d+ .*){4}")
    log = nginx.log()
    assert len(re.findall(r"logger: (?:GET|POST) /auth 401 ", log)) == 2, log[-3000:]
    assert len(re.findall(r"logger: (?:GET|POST) /auth 200 ", log)) == 2



# The auth service of the callout examples: a location of the same nginx,
# reached through the upstream block auth_service, as a plugin written for
# an Envoy cluster of that name expects. "Authorization: Bearer demo" is
# alice; anything else is refused with 401.
def auth_conf(module, path, directive, auth_port="@PORT@"):
    return f"""
    proxy_wasm_module {module} @WASM:{path}@;
    upstream auth_service {{
        server 127.0.0.1:{auth_port};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:@PORT@;
        location = /auth {{
            if ($http_authorization != "Bearer demo") {{
                return 401;
            }}
            add_header x-auth-user alice;
            return 200;
        }}
        location / {{
            {directive}
            proxy_pass http://@UPSTREAM@;
        }}
    }}
"""


C_AUTH = ("auth_callout", "examples/auth_callout.wasm",
          "proxy_wasm auth_callout 'config={\"upstream\": \"auth_service\", "
          "\"path\": \"/auth\", \"timeout_ms\": 1000}';")
AS_AUTH = ("as_auth", "examples/as_auth_call.wasm", "proxy_wasm as_auth root_id=auth_call;")


def check_auth_example(nginx, upstream, conf, user_header):
    nginx.start(auth_conf(*conf), workers=2)
    r = nginx.request("/app", headers={"Authorization": "Bearer demo"})
    assert r.status == 200 and r.body == b"upstream ok\n"
    # the request waited for the answer, then went on with the user the
    # auth service named
    assert upstream.header_values(user_header) == ["alice"]
    assert upstream.header_values("authorization") == ["Bearer demo"]
    r = nginx.request("/app", headers={"Authorization": "Bearer wrong"})
    assert r.status in (401, 403)
    r = nginx.request("/app")
    assert r.status in (401, 403)
    assert len(upstream.requests) == 1, "a refused request must not reach the upstream"
    log = nginx.log()
    assert "[alert]" not in log and "[emerg]" not in log and "trapped" not in log


def test_auth_callout_example_asks_the_auth_service(nginx, upstream):
    check_auth_example(nginx, upstream, C_AUTH, "x-auth-user")
    r = nginx.request("/app", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401 and r.body == b"unauthorized\n"


def test_assemblyscript_callout_asks_the_auth_service(nginx, upstream):
    """The AssemblyScript SDK's RootContext.httpCall, unchanged: the answer
    comes to the root context, the SDK makes the request effective."""
    check_auth_example(nginx, upstream, AS_AUTH, "x-as-auth")
    r = nginx.request("/app", headers={"Authorization": "Bearer wrong"})
    assert r.status == 403 and r.body == b"denied by as_auth_call\n"


def test_callout_examples_when_the_service_is_down(nginx, upstream):
    from conftest import free_port
    dead = str(free_port())
    for module, path, directive in (C_AUTH, AS_AUTH):
        nginx.start(auth_conf(module, path, directive, auth_port=dead))
        r = nginx.request("/app", headers={"Authorization": "Bearer demo"})
        assert r.status == 503, (module, r.status, r.body)
        assert upstream.requests == []
        nginx.stop()
