"""Chains of proxy_wasm directives and their inheritance across levels."""

import re

from conftest import free_port

CHAIN = """
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm add_header config=x-chain=first;
            proxy_wasm add_header config=x-chain=second;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_chain_runs_in_order(nginx):
    nginx.start(CHAIN)
    r = nginx.request("/")
    assert r.status == 200
    assert r.header_values("x-chain") == ["first", "second"]


LEVELS = """
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    proxy_wasm add_header config=x-level=http;
    server {
        listen 127.0.0.1:@PORT@;
        proxy_wasm add_header config=x-level=server;
        proxy_wasm add_header config=x-server=yes;

        location / {
            proxy_pass http://@UPSTREAM@;
        }
        location /inner {
            proxy_wasm add_header config=x-level=location;
            proxy_pass http://@UPSTREAM@;
        }
    }
    server {
        listen 127.0.0.1:@PORT2@;
        location / {
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_innermost_level_wins(nginx):
    port2 = free_port()
    nginx.start(LEVELS.replace("@PORT2@", str(port2)))

    r = nginx.request("/")
    assert r.header_values("x-level") == ["server"]
    assert r.header_values("x-server") == ["yes"]

    # a location with its own proxy_wasm does not merge the server's chain
    r = nginx.request("/inner")
    assert r.header_values("x-level") == ["location"]
    assert r.header_values("x-server") == []

    # a server without proxy_wasm inherits the http-level chain
    saved, nginx.port = nginx.port, port2
    try:
        r = nginx.request("/")
    finally:
        nginx.port = saved
    assert r.header_values("x-level") == ["http"]


SHARED = """
    proxy_wasm_module lifecycle @WASM:tests/plugins/lifecycle.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /a { proxy_wasm lifecycle config=one; proxy_pass http://@UPSTREAM@; }
        location /b { proxy_wasm lifecycle config=one; proxy_pass http://@UPSTREAM@; }
        location /c { proxy_wasm lifecycle config=two; proxy_pass http://@UPSTREAM@; }
    }
"""


def test_one_root_context_per_distinct_configuration(nginx):
    nginx.start(SHARED)
    # the worker configures each distinct (module, root_id, config) once
    assert nginx.wait_log(r"proxy_on_configure \d+ \d+ config=two")
    log = nginx.log()
    worker = log[log.index("start worker process"):]
    assert len(re.findall(r"proxy_on_configure \d+ 3 config=one", worker)) == 1
    assert len(re.findall(r"proxy_on_configure \d+ 3 config=two", worker)) == 1
    for path in ("/a", "/b", "/c"):
        assert nginx.request(path).status == 200
