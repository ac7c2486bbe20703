"""Header map hostcalls act on the request nginx forwards (hostcalls.wasm:
the request header x-test names the hostcall to run, the plugin logs
`result: <name> <status> <value>`)."""

import http.client
import re

HOSTCALLS = """
    proxy_wasm_module hostcalls @WASM:tests/plugins/hostcalls.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm hostcalls;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def result(nginx, name):
    m = nginx.wait_log(r"result: " + name + r" (\d+)(?: ([^\n]*?))?(?:, client: .*)?\n")
    assert m, nginx.log()
    return int(m.group(1)), m.group(2)


def raw_request(nginx, path, headers):
    """A request with repeated headers, in order."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        names = {k.lower() for k, _ in headers}
        conn.putrequest("GET", path, skip_host="host" in names,
                        skip_accept_encoding="accept-encoding" in names)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_add_reaches_upstream(nginx, upstream):
    nginx.start(HOSTCALLS)
    assert nginx.request("/", headers={"x-test": "add_header"}).status == 200
    assert result(nginx, "add_header") == (0, "yes")
    assert upstream.header_values("x-added") == ["yes"]


def test_replace_replaces_every_value(nginx, upstream):
    nginx.start(HOSTCALLS)
    status, _ = raw_request(nginx, "/", [("x-test", "replace_header"), ("x-other", "1"),
                                         ("X-Test", "second")])
    assert status == 200
    assert result(nginx, "replace_header") == (0, "replaced")
    assert upstream.header_values("x-test") == ["replaced"]
    assert upstream.header_values("x-other") == ["1"]


def test_remove_reaches_upstream(nginx, upstream):
    nginx.start(HOSTCALLS)
    status, _ = raw_request(nginx, "/", [("x-test", "remove_header"), ("x-keep", "k"),
                                         ("x-test", "again")])
    assert status == 200
    assert result(nginx, "remove_header") == (0, "get=1")
    assert upstream.header_values("x-test") == []
    assert upstream.header_values("x-keep") == ["k"]


def test_set_pairs_replaces_the_request_headers(nginx, upstream):
    nginx.start(HOSTCALLS)
    assert nginx.request("/", headers={"x-test": "set_pairs", "x-gone": "1"}).status == 200
    # pseudo-headers absent from the new map keep their values
    assert result(nginx, "set_pairs") == (
        0, f"6 :method=GET :path=/ :authority=127.0.0.1:{nginx.port} :scheme=http a=1 b=22")
    assert upstream.header_values("a") == ["1"]
    assert upstream.header_values("b") == ["22"]
    assert upstream.header_values("x-gone") == []
    assert upstream.header_values("x-test") == []


def test_get_pairs_lists_pseudo_headers_first(nginx):
    nginx.start(HOSTCALLS)
    raw_request(nginx, "/p?q=1", [("Host", "example.test"), ("X-Test", "get_pairs"),
                                  ("X-Multi", "a"), ("x-multi", "b"),
                                  ("Accept-Encoding", "gzip")])
    # names lower-cased, repeated headers kept, in the client's order
    assert result(nginx, "get_pairs") == (
        0, "9 :method=GET :path=/p?q=1 :authority=example.test :scheme=http "
           "host=example.test x-test=get_pairs x-multi=a x-multi=b accept-encoding=gzip")


def test_request_path_property(nginx):
    nginx.start(HOSTCALLS)
    nginx.request("/a/b?c=d", headers={"x-test": "property_path"})
    assert result(nginx, "property_path") == (0, "/a/b?c=d")


def test_local_response_with_headers(nginx, upstream):
    nginx.start(HOSTCALLS)
    r = nginx.request("/", headers={"x-test": "local_response"})
    assert r.status == 401
    assert r.body == b"nope"
    assert r.header_values("x-why") == ["test"]
    assert upstream.requests == []


# ---------------------------------------------------------- response splitting

SPLIT = r"""
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /value {
            proxy_wasm filter "config=resph.header=x-a:v\r\nx-evil:1 resph.header=x-ok:1";
            proxy_pass http://@UPSTREAM@;
        }
        location /name {
            proxy_wasm filter "config=resph.header=x-a\r\nx-evil:v resph.header=x-ok:1";
            proxy_pass http://@UPSTREAM@;
        }
        location /local {
            proxy_wasm filter "config=reqh.localhdr=x-a:v\r\n\r\n<html>evil";
            proxy_pass http://@UPSTREAM@;
        }
        location /localname {
            proxy_wasm filter "config=reqh.localhdr=x-a\nx-evil:v";
            proxy_pass http://@UPSTREAM@;
        }
    }
"""

FIELD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: [^\r\n\0]*")


def raw_get(nginx, path):
    """The bytes of the whole response to an HTTP/1.0 request."""
    import socket
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def well_formed(data):
    """(status, {name: value}, body) of a response whose head is only
    CRLF-terminated `token: value` lines; fails on anything else."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    lines = head.split(b"\r\n")
    assert re.fullmatch(rb"HTTP/1\.1 \d{3} [^\r\n]*", lines[0]), data
    fields = {}
    for line in lines[1:]:
        assert FIELD.fullmatch(line), (line, data)
        k, v = line.split(b": ", 1)
        fields[k.lower().decode()] = v.decode()
    return int(lines[0].split()[1]), fields, body


def test_crlf_from_a_plugin_never_splits_the_response(nginx):
    nginx.start(SPLIT)
    for path, action in (("/value", "resph.header=x-a:v"), ("/name", "resph.header=x-a")):
        status, fields, body = well_formed(raw_get(nginx, path))
        assert status == 200 and "x-evil" not in fields and "x-a" not in fields, fields
        assert fields.get("x-ok") == "1", fields  # the plugin went on after the refusal
        assert nginx.wait_log(r"filter: action " + re.escape(action) + r"[^\n]* 2\b"), \
            nginx.log()[-2000:]
    # a local response with a CRLF in a header value or name is refused
    # (BadArgument): the request goes on to the upstream, unsplit
    for path in ("/local", "/localname"):
        status, fields, body = well_formed(raw_get(nginx, path))
        assert status == 200 and "x-evil" not in fields and "x-a" not in fields, fields
        assert b"evil" not in body and b"local" not in body, body
    assert len(re.findall(r"filter: action reqh\.localhdr=[^\n]* 2\b", nginx.log())) == 2, \
        nginx.log()[-2000:]
    assert len(re.findall(r"refused proxy_send_local_response", nginx.log())) == 2, \
        nginx.log()[-2000:]


# ------------------------------------------- headers nginx keeps pointers to

SHORTCUTS = r"""
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm filter "config=reqh.header=X-Forwarded-For:10.1.1.1 reqh.header=x-plain:1 resph.header=:status:302 resph.header=Location:/elsewhere resph.header=x-mine:2";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_written_headers_reach_nginx_s_own_pointers(nginx, upstream):
    """A header a plugin writes that nginx also keeps a pointer to
    (r->headers_in.x_forwarded_for, r->headers_out.location) is linked
    there, others only listed: $proxy_add_x_forwarded_for appends to the
    plugin's value, and nginx makes the plugin's relative Location absolute
    (absolute_redirect), which it does only through that pointer."""
    nginx.start(SHORTCUTS)
    status, fields, _ = well_formed(raw_get(nginx, "/"))
    assert status == 302, fields
    assert fields.get("location") == f"http://x:{nginx.port}/elsewhere", fields
    assert fields.get("x-mine") == "2", fields
    assert upstream.header_values("x-forwarded-for") == ["10.1.1.1, 127.0.0.1"]
    assert upstream.header_values("x-plain") == ["1"]
