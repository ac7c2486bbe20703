"""`nginx -t` refuses bad modules and bad plugin configurations with a
message naming the module, the reason and the configuration line."""

import re


def conf_line(nginx, needle):
    with open(nginx.conf) as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                return n
    raise AssertionError(needle)


def test_bad_import_fails_nginx_t(nginx):
    rc, err = nginx.test_config("""
    proxy_wasm_module bad @WASM:tests/plugins/bad_import.wasm@;
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm bad; } }
""")
    assert rc != 0
    assert "test failed" in err
    line = conf_line(nginx, "proxy_wasm_module bad")
    m = re.search(r"\[emerg\].*proxy_wasm_module \"bad\": (.*) in (\S+):(\d+)", err)
    assert m, err
    assert "env.proxy_does_not_exist" in m.group(1)
    assert m.group(2) == nginx.conf and int(m.group(3)) == line


def test_good_configuration_passes_nginx_t(nginx):
    rc, err = nginx.test_config("""
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm add_header config=a=b; } }
""")
    assert rc == 0, err
    assert "test is successful" in err


def test_plugin_refusing_its_configuration_fails_nginx_t(nginx):
    rc, err = nginx.test_config("""
    proxy_wasm_module deny @WASM:examples/deny.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm deny config=x-ok; }
        location /bad { proxy_wasm deny 'config=not a header'; }
    }
""")
    assert rc != 0
    line = conf_line(nginx, "config=not a header")
    m = re.search(r"\[emerg\].*proxy_wasm \"deny\": plugin failed to start: (.*) in (\S+):(\d+)",
                  err)
    assert m, err
    assert "on_configure" in m.group(1)
    assert int(m.group(3)) == line
    # the plugin's own explanation is logged too
    assert "deny: bad configuration" in err


def test_unknown_module_name_fails_nginx_t(nginx):
    rc, err = nginx.test_config("""
    server { listen 127.0.0.1:@PORT@; location / { proxy_wasm nosuch; } }
""")
    assert rc != 0
    assert re.search(r"\[emerg\].*proxy_wasm \"nosuch\": no proxy_wasm_module with this name "
                     r"in \S+:\d+", err), err


def test_missing_file_fails_nginx_t(nginx, tmp_path):
    rc, err = nginx.test_config(f"""
    proxy_wasm_module gone {tmp_path}/does-not-exist.wasm;
""")
    assert rc != 0
    assert re.search(r"\[emerg\].*proxy_wasm_module \"gone\": .*does-not-exist\.wasm", err), err


def test_invalid_parameters_fail_nginx_t(nginx):
    for http, message in [
        ("proxy_wasm_module a @WASM:examples/add_header.wasm@ colour=blue;",
         'invalid parameter "colour=blue"'),
        ("proxy_wasm_module a @WASM:examples/add_header.wasm@;\n"
         "proxy_wasm_module a @WASM:examples/deny.wasm@;",
         'duplicate proxy_wasm_module "a"'),
        ("proxy_wasm_module a @WASM:examples/add_header.wasm@;\n"
         "proxy_wasm a config=x=1 config=y=2;",
         'duplicate parameter "config="'),
        ("proxy_wasm_module a @WASM:examples/add_header.wasm@;\n"
         "proxy_wasm a config=x=1 config_file=/etc/hostname;",
         'takes either "config=" or "config_file=", not both'),
        ("proxy_wasm_module a @WASM:examples/add_header.wasm@;\n"
         "proxy_wasm a config_file=/nonexistent/file;",
         '"/nonexistent/file" failed'),
    ]:
        rc, err = nginx.test_config(http)
        assert rc != 0, http
        assert message in err, err


def test_json_configuration_and_config_file(nginx, upstream, tmp_path):
    # hostcalls.wasm's "config" test logs the plugin configuration it reads
    cfg = tmp_path / "plugin.json"
    cfg.write_text('{"from": "file"}')
    nginx.start(f"""
    proxy_wasm_module hostcalls @WASM:tests/plugins/hostcalls.wasm@;
    server {{
        listen 127.0.0.1:@PORT@;
        location /inline {{
            proxy_wasm hostcalls 'config={{"k": "v", "list": [1, 2]}}';
            proxy_pass http://@UPSTREAM@;
        }}
        location /file {{
            proxy_wasm hostcalls config_file={cfg};
            proxy_pass http://@UPSTREAM@;
        }}
    }}
""")
    assert nginx.request("/inline", headers={"x-test": "config"}).status == 200
    assert nginx.wait_log(r'result: config 0 \{"k": "v", "list": \[1, 2\]\}'), nginx.log()
    assert nginx.request("/file", headers={"x-test": "config"}).status == 200
    assert nginx.wait_log(r'result: config 0 \{"from": "file"\}'), nginx.log()


def test_cache_dir_directive(nginx, tmp_path):
    cache = tmp_path / "wasm-cache"
    http = f"""
    proxy_wasm_cache_dir {cache};
    proxy_wasm_module add_header @WASM:examples/add_header.wasm@;
    server {{ listen 127.0.0.1:@PORT@; location / {{ proxy_wasm add_header config=a=b; }} }}
"""
    rc, err = nginx.test_config(http)
    assert rc == 0, err
    assert any(p.name.endswith(".so") for p in cache.iterdir()), list(cache.iterdir())

    rc, err = nginx.test_config(http.replace(str(cache), "off"))
    assert rc == 0, err
