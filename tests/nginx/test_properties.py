"""Properties (docs/ABI.md §6.3, §7) with Envoy's encodings, ngx.<variable>
and proxy_set_property, read with filter.wasm's prop= action (which logs
`filter: prop <path> <status> <hex of the value>`)."""

import re
import struct

CONF = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@ vm_id=vm1;
    server {
        listen 127.0.0.1:@PORT@;
        server_name example.test;
        set $wasm_var initial;          # server rewrite phase: before ours
        location /loc {
            proxy_wasm filter root_id=r1 config=log.prop=ngx.wasm_var;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def props(nginx, *names):
    out = {}
    for name in names:
        m = nginx.wait_log(r"filter: prop %s (\d+) ([0-9a-f]*)" % re.escape(name))
        assert m, (name, nginx.log()[-3000:])
        out[name] = (int(m.group(1)), bytes.fromhex(m.group(2)))
    return out


def i64(b):
    assert len(b) == 8, b
    return struct.unpack("<q", b)[0]


def rules(cb, names):
    return " ".join(f"{cb}.prop={n}" for n in names)


def test_request_properties(nginx, upstream):
    nginx.start(CONF)
    names = ["request.path", "request.url_path", "request.host", "request.scheme",
             "request.method", "request.referer", "request.useragent", "request.time",
             "request.id", "request.protocol", "request.query", "request.duration",
             "request.size", "request.total_size", "request.headers.x-multi",
             "plugin_name", "plugin_root_id", "plugin_vm_id", "source.address",
             "source.port", "destination.address", "destination.port", "connection.id",
             "connection.mtls", "connection.requested_server_name", "node.id",
             "xds.route_name", "xds.virtual_host_name", "no.such.thing",
             "connection.tls_version", "ngx.uri", "ngx.server_port"]
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    conn.putrequest("POST", "/loc/a?b=c", skip_host=True)
    conn.putheader("Host", "h.test")
    for k, v in (("Referer", "http://ref/"), ("User-Agent", "ua/1"), ("X-Request-Id", "rid-1"),
                 ("x-multi", "1"), ("x-multi", "2"), ("Content-Length", "5"),
                 ("x-pw", rules("reqb", names))):
        conn.putheader(k, v)
    conn.endheaders(b"12345")
    assert conn.getresponse().status == 200
    conn.close()
    p = props(nginx, *names)
    s = {k: v[1] for k, v in p.items() if v[0] == 0}
    assert s["request.path"] == b"/loc/a?b=c"
    assert s["request.url_path"] == b"/loc/a"
    assert s["request.host"] == b"h.test"
    assert s["request.scheme"] == b"http"
    assert s["request.method"] == b"POST"
    assert s["request.referer"] == b"http://ref/"
    assert s["request.useragent"] == b"ua/1"
    assert s["request.id"] == b"rid-1"
    assert s["request.protocol"] == b"HTTP/1.1"
    assert s["request.query"] == b"b=c"
    assert s["request.headers.x-multi"] == b"1,2"   # values joined (Envoy)
    import time
    assert abs(i64(s["request.time"]) / 1e9 - time.time()) < 60
    assert 0 <= i64(s["request.duration"]) < 10e9
    assert i64(s["request.size"]) == 5
    assert i64(s["request.total_size"]) > 100
    assert s["plugin_name"] == b"filter"
    assert s["plugin_root_id"] == b"r1"
    assert s["plugin_vm_id"] == b"vm1"
    assert s["source.address"].startswith(b"127.0.0.1:")
    assert i64(s["source.port"]) == int(s["source.address"].split(b":")[1])
    assert s["destination.address"] == b"127.0.0.1:%d" % nginx.port
    assert i64(s["destination.port"]) == nginx.port
    assert i64(s["connection.id"]) > 0
    assert s["connection.mtls"] == b"\x00"          # bool: one byte
    assert s["connection.requested_server_name"] == b""
    assert s["node.id"]
    assert s["xds.route_name"] == b"/loc"
    assert s["xds.virtual_host_name"] == b"example.test"
    assert s["ngx.uri"] == b"/loc/a"
    assert s["ngx.server_port"] == str(nginx.port).encode()
    assert p["no.such.thing"][0] == 1              # NotFound
    assert p["connection.tls_version"][0] == 1     # no TLS here


def test_request_headers_map_property(nginx):
    nginx.start(CONF)
    nginx.request("/loc", headers={"x-a": "1", "x-pw": "reqh.prop=request.headers"})
    (st, raw), = props(nginx, "request.headers").values()
    assert st == 0
    n = struct.unpack_from("<I", raw)[0]
    sizes = struct.unpack_from("<%dI" % (2 * n), raw, 4)
    pos, pairs = 4 + 8 * n, []
    for i in range(n):
        k = raw[pos:pos + sizes[2 * i]]
        pos += sizes[2 * i] + 1
        v = raw[pos:pos + sizes[2 * i + 1]]
        pos += sizes[2 * i + 1] + 1
        pairs.append((k, v))
    assert pos == len(raw)
    assert (b":method", b"GET") in pairs and (b"x-a", b"1") in pairs


def test_response_properties_and_on_log(nginx, upstream):
    nginx.start(CONF)
    names = ["response.code", "response.code_details", "response.flags",
             "response.headers.x-upstream", "response.size", "response.total_size",
             "upstream.address", "upstream.port", "xds.cluster_name", "request.headers.x-pw"]
    assert nginx.request("/loc", headers={"x-pw": rules("log", names) + " log.headers"}).status == 200
    p = props(nginx, *names)
    s = {k: v[1] for k, v in p.items() if v[0] == 0}
    assert i64(s["response.code"]) == 200
    assert s["response.code_details"] == b"via_upstream"
    assert i64(s["response.flags"]) == 0
    assert s["response.headers.x-upstream"] == b"python"
    assert i64(s["response.size"]) == len(b"upstream ok\n")
    assert i64(s["response.total_size"]) > 100
    assert s["upstream.address"] == b"127.0.0.1:%d" % upstream.port
    assert i64(s["upstream.port"]) == upstream.port
    assert s["xds.cluster_name"] == b"127.0.0.1"   # the proxy_pass host
    # on_log sees the final request and response headers
    log = nginx.log()
    assert re.search(r"filter: map 0 0 :method=GET :path=/loc ", log)
    assert re.search(r"filter: map 2 0 :status=200 content-type=text/plain ", log)


def test_response_properties_before_the_response_are_not_found(nginx):
    nginx.start(CONF)
    nginx.request("/loc", headers={"x-pw": "reqh.prop=response.code"})
    assert props(nginx, "response.code")["response.code"][0] == 1


def test_set_property_and_nginx_variables(nginx, upstream):
    nginx.start(CONF)
    nginx.request("/loc", headers={
        "x-pw": "reqh.setprop=ngx.wasm_var:changed reqh.setprop=my.key:v1 "
                "reqh.setprop=ngx.args:x=1 reqh.setprop=ngx.uri:ro "
                "resph.prop=my.key reqh.prop=ngx.nope"})
    log = nginx.log()
    # ngx.<set variable> written, read back by the configuration's on_log rule
    assert props(nginx, "ngx.wasm_var")["ngx.wasm_var"] == (0, b"changed")
    assert props(nginx, "my.key")["my.key"] == (0, b"v1")
    assert props(nginx, "ngx.nope")["ngx.nope"][0] == 1
    assert re.search(r"action reqh.setprop=ngx.wasm_var:changed 0", log)
    assert re.search(r"action reqh.setprop=ngx.args:x=1 0", log)
    assert re.search(r"action reqh.setprop=ngx.uri:ro 1", log)   # read-only: NotFound
    # $args written: the upstream got the new query
    assert upstream.requests[-1][1] == "/loc?x=1"
