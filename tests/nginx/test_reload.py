"""A configuration reload (SIGHUP) recompiles and restarts the plugins; a
bad new configuration leaves the running one in place."""

import os
import signal
import time

CONF = """
    proxy_wasm_module add_header @WASM:@PLUGIN@@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm add_header config=x-gen=@GEN@; proxy_pass http://@UPSTREAM@; }
    }
"""


def conf(gen, plugin="examples/add_header.wasm"):
    return CONF.replace("@GEN@", gen).replace("@PLUGIN@", plugin)


def reload(nginx, http, expect_gen):
    nginx.write_conf(http)
    nginx.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 30
    while time.time() < deadline:
        if nginx.request("/").header("x-gen") == expect_gen:
            return True
        time.sleep(0.1)
    return False


def test_reload_applies_the_new_configuration(nginx):
    nginx.start(conf("one"))
    assert nginx.request("/").header("x-gen") == "one"
    assert reload(nginx, conf("two"), "two"), nginx.log()
    assert nginx.request("/").header_values("x-gen") == ["two"]


def test_bad_reload_keeps_serving(nginx):
    nginx.start(conf("one"))
    nginx.write_conf(conf("two", "tests/plugins/bad_import.wasm"))
    nginx.proc.send_signal(signal.SIGHUP)
    assert nginx.wait_log(r"\[emerg\].*proxy_wasm_module \"add_header\": .*proxy_does_not_exist")
    assert nginx.request("/").header("x-gen") == "one"
    assert nginx.proc.poll() is None
    assert os.path.exists(os.path.join(nginx.prefix, "logs", "nginx.pid"))
