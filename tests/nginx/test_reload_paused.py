"""A reload (SIGHUP) while requests are paused by a plugin for something
that has no timer of its own (filter.wasm `reqh.pause` / `resph.pause`:
nothing will ever continue them). The old worker no longer waits forever
nor drops them: once it exits, each is given up by its plugin's failure
policy within about a second (closed: 503; open: the request goes on
without the plugin and gets the upstream's answer), the worker logs it at
warn and exits with code 0, with no "open socket ... left" / "aborting"
alert. Before, the worker ended with such requests open and their
clients got no response."""

import re
import time

from test_stream_control import Background

CONF = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /closed {
            proxy_wasm_failure_policy closed;
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
        location /open {
            proxy_wasm_failure_policy open;
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""

# path, x-pw rules, callback (filter's log name, nginx's), expected answer
CASES = [
    ("/closed/reqh", "reqh.pause", "reqh", "on_request_headers", "closed", 503, None),
    ("/open/reqh", "reqh.pause", "reqh", "on_request_headers", "open", 200,
     b"upstream ok\n"),
    ("/closed/resph", "resph.pause", "resph", "on_response_headers", "closed", 503, None),
    ("/open/resph", "resph.pause", "resph", "on_response_headers", "open", 200,
     b"upstream ok\n"),
]


def test_reload_gives_up_requests_paused_for_nothing_by_their_failure_policy(nginx, upstream):
    # debug: nginx's debug log of timers reads the check's event too
    nginx.start(CONF, level="debug")
    old = re.findall(r"start worker process (\d+)", nginx.log())
    assert len(old) == 1
    held = []
    for path, rules, cb, _, _, _, _ in CASES:
        held.append(Background(nginx, path, headers={"x-pw": rules}))
        assert nginx.wait_log(r'filter: %s ctx=\d+ [^\n]*request: "GET %s ' % (cb, path)), \
            nginx.log()[-3000:]
    time.sleep(0.5)
    assert all(h.result is None for h in held), "the plugin must hold the requests"

    reloaded = time.time()
    assert nginx.reload(CONF, level="debug"), nginx.log()[-3000:]
    # the old worker exited promptly (its check runs every second)
    assert time.time() - reloaded < 6

    for h, (path, _, _, callback, policy, status, body) in zip(held, CASES):
        r = h.join(10)
        assert not isinstance(r, Exception), (path, r)
        assert r.status == status, (path, r.status, r.body)
        if body is not None:
            assert r.body == body, (path, r.body)
        assert h.done_at - reloaded < 5, path
        assert re.search(
            r'\[warn\] %s#\d+: \*\d+ proxy_wasm: worker exiting: request paused by plugin '
            r'"filter" in %s resumed by its failure policy \(%s\)[^\n]*request: "GET %s '
            % (old[0], callback, policy, path), nginx.log()), (path, nginx.log()[-3000:])

    # the open ones reached the upstream after the reload; the closed
    # request-side one never did
    paths = [p for _, p, _, _ in upstream.requests]
    assert "/open/reqh" in paths and "/closed/reqh" not in paths, paths
    log = nginx.log()
    assert f"worker process {old[0]} exited with code 0" in log, log[-3000:]
    assert "open socket" not in log and "aborting" not in log, log[-3000:]
    assert "[alert]" not in log and "[emerg]" not in log, log[-3000:]
    # the new worker serves
    assert nginx.request("/open/x").status == 200
