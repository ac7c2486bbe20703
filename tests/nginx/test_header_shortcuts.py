"""nginx keeps some request headers in dedicated fields besides the header
list (cookie, x-forwarded-for, host, ...), which its variables read: an
array of all values up to nginx 1.22, a chain of all values through each
header's `next` since 1.23. After a plugin replaces such a header, the
variables must see the plugin's value, on every nginx version the suite runs
on (make test-nginx-sources)."""

import http.client

SHORTCUTS = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm filter "config=reqh.header=cookie:a=1 reqh.header=x-forwarded-for:192.0.2.7";
            proxy_set_header x-seen-cookie $http_cookie;
            proxy_set_header x-seen-a $cookie_a;
            proxy_set_header x-seen-b $cookie_b;
            proxy_set_header x-seen-xff $proxy_add_x_forwarded_for;
            proxy_pass http://@UPSTREAM@;
        }
        location /untouched {
            proxy_set_header x-seen-cookie $http_cookie;
            proxy_set_header x-seen-xff $proxy_add_x_forwarded_for;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def send(nginx, path):
    """A request with two Cookie lines and two X-Forwarded-For lines."""
    c = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        c.putrequest("GET", path)
        c.putheader("Cookie", "a=0")
        c.putheader("Cookie", "b=2")
        c.putheader("X-Forwarded-For", "198.51.100.1")
        c.putheader("X-Forwarded-For", "198.51.100.2")
        c.endheaders()
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_variables_see_the_headers_a_plugin_replaced(nginx, upstream):
    nginx.start(SHORTCUTS)
    # without a plugin: nginx's own view of the repeated headers
    assert send(nginx, "/untouched") == 200
    assert upstream.header_values("x-seen-cookie") == ["a=0; b=2"]
    assert upstream.header_values("x-seen-xff") == ["198.51.100.1, 198.51.100.2, 127.0.0.1"]

    assert send(nginx, "/") == 200
    assert upstream.header_values("cookie") == ["a=1"]
    assert upstream.header_values("x-seen-cookie") == ["a=1"]
    assert upstream.header_values("x-seen-a") == ["1"]
    assert upstream.header_values("x-seen-b") == []   # empty: not sent
    assert upstream.header_values("x-seen-xff") == ["192.0.2.7, 127.0.0.1"]
