"""The end of a connection for the plugins of a stream{} chain: as Envoy's
network filters, a plugin gets on_done, on_log and on_delete only when the
connection reached it (its on_new_connection ran); one after a plugin that
closed the connection in on_new_connection gets nothing.
tests/nginx/plugins/tcp_auth.c closes the connection when its call is
refused; tcp_stream.c with `events` logs its callbacks."""

import os
import time

from conftest import free_port
from test_stream import HTTP
from test_stream_callouts import auth, echo, talk  # noqa: F401 (fixtures)

AUTH = "tests/nginx/plugins/tcp_auth.wasm"
TCP = "tests/nginx/plugins/tcp_stream.wasm"


def start(nginx, auth, echo, allow):
    port = free_port()
    target = f"127.0.0.1:{auth.port}"
    main = f"    proxy_wasm_callout_allow tcp_auth {target};" if allow else ""
    stream = f"""
    proxy_wasm_module tcp_auth @WASM:{AUTH}@;
    proxy_wasm_module tcp @WASM:{TCP}@;
{main}
    log_format ended "ended $status";
    access_log logs/stream_access.log ended;
    server {{
        listen 127.0.0.1:{port};
        proxy_wasm tcp_auth config={target};
        proxy_wasm tcp "config=events";
        proxy_pass 127.0.0.1:{echo.port};
    }}
"""
    nginx.start(HTTP, stream=stream)
    return port


def ended(nginx, timeout=10.0):
    """Waits for the session's access log line (its log phase, after which
    nginx ends the plugins' contexts)."""
    path = os.path.join(nginx.prefix, "logs", "stream_access.log")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and "ended" in open(path).read():
            time.sleep(0.1)
            return True
        time.sleep(0.05)
    return False


def test_a_plugin_after_one_that_closed_at_connection_start_gets_nothing(nginx, auth, echo):
    # without the allow, tcp_auth's call is refused and it closes the
    # connection inside its on_new_connection
    port = start(nginx, auth, echo, allow=False)
    assert talk(port, b"hi\n", 5) == b""  # closed by nginx: the session ended
    assert nginx.wait_log(r"tcp_auth: ctx=\d+ call 2")
    assert ended(nginx), nginx.log()
    log = nginx.log()
    assert "ev on_new_connection" not in log
    assert "ev on_done" not in log and "ev on_log" not in log


def test_both_plugins_end_when_the_connection_reached_both(nginx, auth, echo):
    port = start(nginx, auth, echo, allow=True)
    assert talk(port, b"hi\n", 5) == b"E:hi\n"
    assert nginx.wait_log(r"ev on_log ctx=\d+"), nginx.log()
    log = nginx.log()
    assert "ev on_new_connection" in log and "ev on_done" in log
