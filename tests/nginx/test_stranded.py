"""Requests paused on a VM that a trap discards (filter.wasm, rules in the
x-pw request header; see its header comment).

Request A is paused by a plugin; request B then traps in the same VM (one
VM per worker per module file and vm_id). The dead instance can never call
proxy_continue_* for A, so A gets the failure policy at once: a 503 (closed)
or it goes on without that plugin (open), and the error log says why.
Before, nothing ever woke A: it hung until the client gave up."""

import re
import time

import pytest

from test_stream_control import Background, context_of, resume

CONF = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            @POLICY@
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""

# Where A pauses: x-pw rules, the callback (log name, name in nginx's log),
# the request (path, method, body) and what the upstream answers it.
PAUSES = {
    "request_headers": ("reqh.pause", "reqh", "on_request_headers",
                        "/held", "GET", None, b"upstream ok\n"),
    "request_body": ("reqb.pause", "reqb", "on_request_body",
                     "/echo/held", "POST", b"abc", b"abc"),
    "response_headers": ("resph.pause", "resph", "on_response_headers",
                         "/held", "GET", None, b"upstream ok\n"),
    "response_body": ("respb.pause", "respb", "on_response_body",
                      "/held", "GET", None, b"upstream ok\n"),
}

DISCARDED = (r'\[error\][^\n]*proxy_wasm "filter" failed in %s: paused, and its VM was discarded after '
             r'a trap in another context \(plugin "filter" trapped in '
             r'proxy_on_request_headers: unreachable[^\n]*\); %s[^\n]*request: "%s %s ')


def pause(nginx, phase, name="filter"):
    """Starts request A, paused in `phase`; returns it once it is held."""
    rules, cb, _, path, method, body, _ = PAUSES[phase]
    a = Background(nginx, path, method=method, body=body, headers={"x-pw": rules})
    context_of(nginx, cb, path[1:])
    time.sleep(0.3)
    assert a.result is None, "the plugin must hold the request"
    return a


def trap(nginx, held, status):
    """Request B traps in the VM (B gets `status`); returns the responses of
    the held requests, each of which must come within 1 s."""
    trapped_at = time.time()
    assert nginx.request("/boom", headers={"x-pw": "reqh.trap"}).status == status
    responses = []
    for a in held:
        resp = a.join(timeout=5)
        assert not isinstance(resp, Exception), resp
        assert a.done_at - trapped_at < 1.0
        responses.append(resp)
    return responses


@pytest.mark.parametrize("phase", sorted(PAUSES))
def test_paused_request_fails_closed_when_another_request_traps(nginx, upstream, phase):
    _, _, callback, path, method, _, _ = PAUSES[phase]
    nginx.start(CONF.replace("@POLICY@", ""))
    [resp] = trap(nginx, [pause(nginx, phase)], 503)
    assert resp.status == 503
    assert b"503 Service Temporarily Unavailable" in resp.body
    assert resp.header("x-upstream") is None
    assert nginx.wait_log(DISCARDED % (callback, r"answering 503 \(failure policy closed\)",
                                       method, path)), nginx.log()[-3000:]
    if phase.startswith("request"):
        assert upstream.requests == [], "A must not reach the upstream"

    # nginx keeps serving, on a rebuilt VM
    r = nginx.request("/")
    assert (r.status, r.body) == (200, b"upstream ok\n")
    assert nginx.proc.poll() is None


@pytest.mark.parametrize("phase", sorted(PAUSES))
def test_paused_request_goes_on_without_the_plugin_when_open(nginx, upstream, phase):
    _, _, callback, path, method, _, answer = PAUSES[phase]
    nginx.start(CONF.replace("@POLICY@", "proxy_wasm_failure_policy open;"))
    [resp] = trap(nginx, [pause(nginx, phase)], 200)
    assert (resp.status, resp.body) == (200, answer)
    assert resp.header("x-upstream") == "python"
    assert nginx.wait_log(DISCARDED % (callback,
                                       r"continuing without it \(failure policy open\)",
                                       method, path)), nginx.log()[-3000:]
    upstream.index_of(path)         # A reached the upstream once

    r = nginx.request("/")
    assert (r.status, r.body) == (200, b"upstream ok\n")


def test_every_request_paused_on_the_vm_is_answered(nginx, upstream):
    nginx.start(CONF.replace("@POLICY@", ""))
    held = [pause(nginx, phase) for phase in ("request_headers", "request_body",
                                               "response_headers")]
    assert [r.status for r in trap(nginx, held, 503)] == [503, 503, 503]
    assert len(re.findall(r"its VM was discarded", nginx.log())) == 3
    assert nginx.request("/").status == 200


SHARED = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    proxy_wasm_module shared @WASM:tests/nginx/plugins/filter.wasm@;
    proxy_wasm_module other @WASM:tests/nginx/plugins/filter.wasm@ vm_id=other;
    server {
        listen 127.0.0.1:@PORT@;
        location /shared/ { proxy_wasm shared; proxy_pass http://@UPSTREAM@; }
        location /other/ { proxy_wasm other; proxy_pass http://@UPSTREAM@; }
        location / { proxy_wasm filter; proxy_pass http://@UPSTREAM@; }
    }
"""


def test_only_requests_paused_on_the_discarded_vm_are_answered(nginx, upstream):
    """"shared" declares the same file and vm_id as "filter": one VM, so a
    trap through "filter" discards it too; "other" (another vm_id) is a VM
    of its own, and its paused request waits for its continue as before."""
    nginx.start(SHARED)
    same = Background(nginx, "/shared/held", headers={"x-pw": "reqh.pause"})
    other = Background(nginx, "/other/held", headers={"x-pw": "reqh.pause"})
    context_of(nginx, "reqh", "shared/held")
    ctx = context_of(nginx, "reqh", "other/held")
    time.sleep(0.3)
    assert same.result is None and other.result is None

    [resp] = trap(nginx, [same], 503)
    assert resp.status == 503
    assert re.search(r'proxy_wasm "shared" failed in on_request_headers: paused, and its VM '
                     r'was discarded[^\n]*GET /shared/held ', nginx.log()), nginx.log()[-3000:]

    time.sleep(0.5)
    assert other.result is None, "a request paused on another VM stays held"
    assert resume(nginx, ctx, 0, path="/other/resumer").status == 200
    resp = other.join(timeout=5)
    assert (resp.status, resp.body) == (200, b"upstream ok\n")
    assert len(re.findall(r"its VM was discarded", nginx.log())) == 1


OWN = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_wasm_failure_policy open;
            proxy_wasm filter config=reqb.trap;
            proxy_wasm filter config=reqh.pause;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def test_trap_in_the_paused_request_itself_fails_open(nginx, upstream):
    """The second element pauses the request headers; the body still goes
    through the first one, on the same VM, which traps: the first element is
    skipped (open), and the second, dead too, no longer holds the request."""
    nginx.start(OWN)
    resp = nginx.request("/echo/own", method="POST", body=b"abc")
    assert (resp.status, resp.body) == (200, b"abc")
    assert nginx.wait_log(r'proxy_wasm "filter" failed in on_request_body: plugin "filter" '
                          r'trapped in proxy_on_request_body')
    assert nginx.wait_log(r'proxy_wasm "filter" failed in on_request_headers: paused, and its '
                          r'VM was discarded[^\n]*continuing without it')
