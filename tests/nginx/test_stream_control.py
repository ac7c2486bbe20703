"""Pause and continue, close, and local responses from every phase
(filter.wasm, rules in the x-pw request header; see its header comment).

A paused request is resumed by a second request whose plugin calls
proxy_set_effective_context(<paused context id>) then
proxy_continue_stream: the only way to resume from outside before
HTTP calls and timers exist."""

import re
import socket
import threading
import time

FILTER = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        client_max_body_size 64m;
        location / {
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


class Background:
    """A request made in a thread; .result is the Response (or the error)."""

    def __init__(self, nginx, *args, **kwargs):
        self.result = None
        self.done_at = None

        def run():
            try:
                self.result = nginx.request(*args, **kwargs)
            except Exception as e:  # reported by the test
                self.result = e
            self.done_at = time.time()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "request did not finish"
        return self.result


def context_of(nginx, cb, marker):
    """Context id of the request whose callback `cb` logged with x-mark."""
    m = nginx.wait_log(r"filter: %s ctx=(\d+) [^\n]*request: \"[A-Z]+ /%s" % (cb, marker))
    assert m, nginx.log()[-3000:]
    return m.group(1)


def resume(nginx, ctx, direction, path="/resumer"):
    return nginx.request(path, headers={"x-pw": "reqh.resume", "x-resume-ctx": ctx,
                                        "x-resume-dir": str(direction)})


def test_pause_in_request_headers_holds_until_continue(nginx, upstream):
    nginx.start(FILTER)
    a = Background(nginx, "/held", headers={"x-pw": "reqh.pause"})
    ctx = context_of(nginx, "reqh", "held")
    time.sleep(0.3)
    # nothing went upstream while paused
    assert [p for _, p, _, _ in upstream.requests] == []
    assert a.result is None
    r = resume(nginx, ctx, 0)
    assert r.status == 200
    resp = a.join()
    assert resp.status == 200 and resp.body == b"upstream ok\n"
    # both reached the upstream (the held one only after the resume, checked
    # above); the upstream's threads record them in no guaranteed order
    assert sorted(p for _, p, _, _ in upstream.requests) == ["/held", "/resumer"]
    assert re.search(r"action reqh.resume 0", nginx.log())


def test_pause_in_request_body_holds_the_body(nginx, upstream):
    nginx.start(FILTER)
    a = Background(nginx, "/echo/held", method="POST", body=b"abc",
                   headers={"x-pw": "reqb.pause reqb.upper"})
    ctx = context_of(nginx, "reqb", "echo/held")
    time.sleep(0.3)
    assert upstream.requests == []
    assert resume(nginx, ctx, 0).status == 200
    resp = a.join()
    # every call upper-cased what it saw; the held body went on as it was
    assert resp.status == 200 and resp.body == b"ABC"
    assert upstream.requests[upstream.index_of("/echo/held")][3] == b"ABC"


def test_pause_in_response_headers_holds_the_response(nginx, upstream):
    nginx.start(FILTER)
    a = Background(nginx, "/held?size=100000", headers={"x-pw": "resph.pause"})
    ctx = context_of(nginx, "resph", "held")
    time.sleep(0.3)
    assert a.result is None          # Kong cannot do this
    # no body callback while the headers are paused
    assert not re.search(r"filter: respb ctx=%s " % ctx, nginx.log())
    assert resume(nginx, ctx, 1).status == 200
    resp = a.join()
    assert resp.status == 200 and len(resp.body) == 100000
    assert resp.body[:26] == b"abcdefghijklmnopqrstuvwxyz"


def test_pause_in_response_body_holds_until_continue(nginx, upstream):
    nginx.start(FILTER)
    a = Background(nginx, "/held", headers={"x-pw": "respb.pause respb.upper"})
    ctx = context_of(nginx, "respb", "held")
    time.sleep(0.3)
    assert a.result is None
    assert resume(nginx, ctx, 1).status == 200
    resp = a.join()
    assert resp.status == 200 and resp.body == b"UPSTREAM OK\n"


def test_continue_inside_the_callback_does_not_pause(nginx, upstream):
    # proxy_continue_stream during the callback that then returns Pause:
    # queued, applied after the callback returns (docs/ABI.md §8.10)
    nginx.start(FILTER)
    r = nginx.request("/", headers={"x-pw": "reqh.continue resph.continue respb.continue"})
    assert r.status == 200 and r.body == b"upstream ok\n"


def test_close_stream_resets(nginx, upstream):
    nginx.start(FILTER)
    for rules in ("reqh.close", "resph.close", "respb.close"):
        s = socket.create_connection(("127.0.0.1", nginx.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nx-pw: " + rules.encode() + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        if rules == "reqh.close":
            assert data == b"", data      # no response at all
        else:
            assert b"upstream ok" not in data, (rules, data)
    assert re.search(r"closed the stream in on_request_headers", nginx.log())


def local_checks(r, cb):
    assert r.status == 418, (cb, r.status, r.body)
    assert r.body == b"local from %s\n" % cb.encode()
    assert r.header("x-local") == cb
    assert r.header("content-length") == str(len(r.body))


def test_local_response_from_each_phase(nginx, upstream):
    nginx.start(FILTER)
    local_checks(nginx.request("/", headers={"x-pw": "reqh.local=418"}), "reqh")
    local_checks(nginx.request("/echo", method="POST", body=b"x" * 100,
                               headers={"x-pw": "reqb.local=418"}), "reqb")
    local_checks(nginx.request("/", headers={"x-pw": "resph.local=418"}), "resph")
    local_checks(nginx.request("/", headers={"x-pw": "respb.local=418"}), "respb")
    # from the request side, nothing reached the upstream
    assert [p for _, p, _, _ in upstream.requests] == ["/", "/"]


def test_response_callbacks_see_the_local_response(nginx):
    nginx.start(FILTER)
    r = nginx.request("/", headers={"x-pw": "reqh.local=418 resph.headers respb.body"})
    assert r.status == 418
    log = nginx.log()
    # on_response_headers gets the generated headers, on_response_body its body
    assert re.search(r"filter: map 2 0 :status=418 content-type=text/plain "
                     r"content-length=16 x-local=reqh", log), log[-3000:]
    assert re.search(r"filter: body respb ctx=\d+ status=0 size=16 hash=\w+ "
                     r"head=local from reqh\.", log)


def test_local_response_from_body_of_large_upload(nginx, upstream):
    # answered at the first chunk, without reading the rest
    nginx.start(FILTER)
    r = nginx.request("/echo", method="POST", body=b"y" * (4 << 20),
                      headers={"x-pw": "reqb.local=418"})
    local_checks(r, "reqb")
    assert upstream.requests == []


def test_pause_from_another_chain_element_ordering(nginx, upstream):
    # element 1 pauses; element 2 must not run before the resume
    nginx.start("""
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /two {
            proxy_wasm filter config=reqh.pause;
            proxy_wasm filter config=reqh.header=x-second:yes;
            proxy_pass http://@UPSTREAM@;
        }
        location / { proxy_wasm filter; proxy_pass http://@UPSTREAM@; }
    }
""")
    a = Background(nginx, "/two")
    ctx = context_of(nginx, "reqh", "two")
    time.sleep(0.3)
    log = nginx.log()
    assert len(re.findall(r"filter: reqh ctx=\d+ [^\n]*\"GET /two", log)) == 1
    assert resume(nginx, ctx, 0).status == 200
    assert a.join().status == 200
    # resume() itself goes through `location /` to the upstream: pick /two.
    assert upstream.header_values("x-second", upstream.index_of("/two")) == ["yes"]
    calls = re.findall(r"filter: (reqh|resph|log) ctx=(\d+) [^\n]*\"GET /two", nginx.log())
    assert [c for c, _ in calls][:2] == ["reqh", "reqh"]


def test_local_response_for_a_paused_request_from_another_one(nginx, upstream):
    # proxy_set_effective_context + proxy_send_local_response from another
    # request's callback: applied to the paused request after that callback
    nginx.start(FILTER)
    a = Background(nginx, "/held", headers={"x-pw": "reqh.pause"})
    ctx = context_of(nginx, "reqh", "held")
    r = nginx.request("/other", headers={"x-pw": "reqh.remote_local=429", "x-resume-ctx": ctx})
    assert r.status == 200
    resp = a.join()
    assert resp.status == 429 and resp.body == b"remote\n"
    assert [p for _, p, _, _ in upstream.requests] == ["/other"]


def test_local_response_for_a_paused_response_from_another_one(nginx, upstream):
    nginx.start(FILTER)
    a = Background(nginx, "/held", headers={"x-pw": "respb.pause"})
    ctx = context_of(nginx, "respb", "held")
    nginx.request("/other", headers={"x-pw": "reqh.remote_local=503", "x-resume-ctx": ctx})
    # the generated response goes through on_response_body too, where this
    # plugin pauses again (its rule applies to every body): resume it
    m = nginx.wait_log(r"filter: respb ctx=%s size=7 eos=1" % ctx)
    assert m, nginx.log()[-3000:]
    resume(nginx, ctx, 1)
    resp = a.join()
    assert resp.status == 503 and resp.body == b"remote\n"


def test_grpc_status_of_local_responses(nginx):
    nginx.start(FILTER)
    r = nginx.request("/", headers={"x-pw": "reqh.grpc=7"})
    assert r.status == 200 and r.body == b"grpc"
    assert r.header_values("grpc-status") == ["7"]
    r = nginx.request("/", headers={"x-pw": "reqh.grpc=-1"})
    assert r.status == 200 and r.header_values("grpc-status") == []


H2 = FILTER.replace("listen 127.0.0.1:@PORT@;", "listen 127.0.0.1:@PORT@;\n        listen 127.0.0.1:@PORT2@ http2;")


def curl_background(port, path, *args):
    import subprocess
    return subprocess.Popen(["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge",
                             "-D", "-", *args, f"http://127.0.0.1:{port}{path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_http2_pause_and_continue_both_directions(nginx, upstream):
    from conftest import free_port
    port2 = free_port()
    nginx.start(H2.replace("@PORT2@", str(port2)))
    for cb, direction in (("reqh", 0), ("resph", 1)):
        before = len(upstream.requests)
        p = curl_background(port2, f"/h2held-{cb}", "-H", f"x-pw: {cb}.pause")
        m = nginx.wait_log(r"filter: %s ctx=(\d+) [^\n]*\"GET /h2held-%s HTTP/2.0\"" % (cb, cb))
        assert m, nginx.log()[-3000:]
        ctxs = [m.group(1)]
        time.sleep(0.3)
        assert p.poll() is None                     # still held
        if cb == "reqh":
            assert len(upstream.requests) == before
        assert resume(nginx, ctxs[-1], direction).status == 200
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert out.startswith(b"HTTP/2 200") and out.endswith(b"upstream ok\n"), out


def test_http2_local_responses(nginx, upstream):
    from conftest import free_port
    import subprocess
    port2 = free_port()
    nginx.start(H2.replace("@PORT2@", str(port2)))
    for cb in ("reqh", "reqb", "resph", "respb"):
        # A reply from request headers is sent before the request body is
        # read; nginx then ends the HTTP/2 stream with RST_STREAM (RFC 7540
        # §8.1 allows it), which curl 7.88 reports as an error even for
        # nginx's own `return` (test_http2_reply_before_body_is_nginxs_own).
        # So that phase is tested without a body.
        body = [] if cb == "reqh" else ["--data-binary", "body"]
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-",
                            *body, "-H", f"x-pw: {cb}.local=418",
                            f"http://127.0.0.1:{port2}/echo"], capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith(b"HTTP/2 418"), p.stdout
        assert p.stdout.endswith(b"local from %s\n" % cb.encode())


def test_http2_reply_before_body_is_nginxs_own(nginx, upstream):
    """A local reply from request headers while an HTTP/2 client still sends
    its body behaves as nginx's own `return` does there: the plugin's reply
    and callbacks all run, and nginx ends the stream the same way."""
    from conftest import free_port
    import subprocess
    port2 = free_port()
    conf = H2.replace("@PORT2@", str(port2)).replace(
        "location / {", "location = /nginx-return { return 418 \"local\\n\"; }\n        location / {", 1)
    nginx.start(conf)

    def outcomes(path, *hdr):
        res = set()
        for _ in range(8):
            p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                "-w", "%{http_code}", "--data-binary", "body", *hdr,
                                f"http://127.0.0.1:{port2}{path}"], capture_output=True, timeout=30)
            res.add(p.stdout.decode() if p.returncode == 0 else "reset")
        return res

    ours = outcomes("/echo", "-H", "x-pw: reqh.local=418")
    theirs = outcomes("/nginx-return")
    assert ours <= {"418", "reset"} and theirs <= {"418", "reset"}, (ours, theirs)
    assert nginx.wait_log(r"filter: log ctx=\d+ [^\n]*POST /echo HTTP/2.0")


def test_client_gone_while_paused(nginx, upstream):
    nginx.start(FILTER)
    s = socket.create_connection(("127.0.0.1", nginx.port), timeout=10)
    s.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\nx-pw: reqh.pause\r\n\r\n")
    ctx = context_of(nginx, "reqh", "gone")
    s.close()
    # the request ends (499), its stream context too; nothing went upstream
    assert nginx.wait_log(r"filter: log ctx=%s " % ctx), nginx.log()[-2000:]
    assert upstream.requests == []
    assert resume(nginx, ctx, 0).status == 200     # a stale id: ignored


def test_http2_close_stream_resets_the_stream(nginx, upstream):
    from conftest import free_port
    import subprocess
    port2 = free_port()
    nginx.start(H2.replace("@PORT2@", str(port2)))
    for rules in ("reqh.close", "resph.close", "reqb.close"):
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--data-binary", "x",
                            "-H", "x-pw: " + rules, f"http://127.0.0.1:{port2}/a"],
                           capture_output=True, timeout=30)
        # RST_STREAM (nginx's 444 on HTTP/2: PROTOCOL_ERROR), no response
        assert p.returncode != 0 and p.stdout == b"", p
        assert re.search(rb"stream 1 was not closed cleanly", p.stderr), p.stderr
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", f"http://127.0.0.1:{port2}/b"],
                       capture_output=True, timeout=30)
    assert p.stdout == b"upstream ok\n"


def test_resumed_request_that_ends_at_once(nginx, upstream, tmp_path, monkeypatch):
    # Resuming runs the rest of the request at once: with `return` it ends,
    # and its pool (the module's context with it) is freed while the
    # module's event handler is still on the stack. Run under valgrind's
    # memcheck: the handler read the freed context before (no crash, a
    # use after free all the same).
    import conftest
    vg = tmp_path / "vg"
    vg.mkdir()
    wrapper = tmp_path / "nginx-memcheck"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=memcheck --error-limit=no "
                       f"--log-file={vg}/vg.%p {conftest.NGINX} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "NGINX", str(wrapper))
    nginx.start("""
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location /local { proxy_wasm filter; return 200 "local ok\\n"; }
        location / { proxy_wasm filter; proxy_pass http://@UPSTREAM@; }
    }
""")
    a = Background(nginx, "/local/held", headers={"x-pw": "reqh.pause"})
    ctx = context_of(nginx, "reqh", "local/held")
    assert resume(nginx, ctx, 0).status == 200
    r = a.join(timeout=60)
    assert r.status == 200 and r.body == b"local ok\n"
    assert nginx.request("/local/next").body == b"local ok\n"
    nginx.stop()
    reports = [p.read_text() for p in vg.iterdir()]
    assert len(reports) >= 2  # the master and its worker
    for text in reports:
        assert "ERROR SUMMARY: 0 errors" in text, text[-3000:]
