"""Request and response bodies through proxy_on_request_body /
proxy_on_response_body (filter.wasm; rules in the x-pw request header or
the plugin configuration). The upstream echoes the body for /echo paths
and sends N bytes of "abc...z" for ?size=N."""

import hashlib
import http.client
import re
import socket
import subprocess

FILTER = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        client_max_body_size 64m;
        @EXTRA@
        location / {
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
        location /spool {
            client_body_buffer_size 1k;
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@/echo;
        }
        location /big {
            proxy_wasm_request_body_buffer_size 16m;
            proxy_wasm_response_body_buffer_size 16m;
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@/echo;
        }
        location /limited {
            proxy_wasm_request_body_buffer_size 10k;
            proxy_wasm_response_body_buffer_size 10k;
            proxy_wasm filter;
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


def start(nginx, extra=""):
    nginx.start(FILTER.replace("@EXTRA@", extra))


def alphabet(n):
    return (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]


def calls(nginx, cb):
    """(size, eos) of every call of callback cb, in order."""
    return [(int(s), int(e)) for s, e in
            re.findall(r"filter: %s ctx=\d+ size=(\d+) eos=(\d)" % cb, nginx.log())]


def test_request_body_chunks_are_rewritten_in_place(nginx, upstream):
    start(nginx)
    r = nginx.request("/echo", method="POST", body=b"hello world",
                      headers={"x-pw": "reqb.upper"})
    assert r.status == 200 and r.body == b"HELLO WORLD"
    assert upstream.requests[-1][3] == b"HELLO WORLD"
    # one call with the whole (small) body and end_of_stream
    assert calls(nginx, "reqb") == [(11, 1)]


def test_request_body_prepend_append_fixes_content_length(nginx, upstream):
    start(nginx)
    r = nginx.request("/echo", method="POST", body=b"middle",
                      headers={"x-pw": "reqb.prepend=<< reqb.append=>>>"})
    assert r.body == b"<<middle>>>"
    assert upstream.header_values("content-length") == ["11"]


def test_request_body_truncate_and_splice(nginx, upstream):
    start(nginx)
    r = nginx.request("/echo", method="POST", body=b"0123456789",
                      headers={"x-pw": "reqb.splice=2,3,abc reqb.truncate=6"})
    assert r.body == b"01abc5"
    assert upstream.header_values("content-length") == ["6"]


def test_large_request_body_streams_through_every_chunk(nginx, upstream):
    start(nginx)
    body = alphabet(5 << 20)
    r = nginx.request("/echo", method="POST", body=body, headers={"x-pw": "reqb.upper"})
    assert r.status == 200
    assert len(r.body) == len(body) and r.body == body.upper()
    sizes = calls(nginx, "reqb")
    assert len(sizes) > 2                      # called for each chunk nginx read
    assert sum(s for s, _ in sizes) == len(body)
    assert sizes[-1][1] == 1 and all(e == 0 for _, e in sizes[:-1])


def test_buffered_request_body_sees_the_total(nginx, upstream):
    # Pause = StopIterationAndBuffer: called again with everything so far
    start(nginx)
    body = alphabet(3 << 20)
    r = nginx.request("/big", method="POST", body=body,
                      headers={"x-pw": "reqb.buffer reqb.upper_eos reqb.body"})
    assert r.status == 200 and r.body == body.upper()
    sizes = calls(nginx, "reqb")
    assert sizes[-1] == (len(body), 1)
    assert [s for s, _ in sizes] == sorted(s for s, _ in sizes)
    assert upstream.header_values("content-length") == [str(len(body))]


def test_chunked_upload(nginx, upstream):
    start(nginx)
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        parts = [b"first ", b"second ", b"third"]
        conn.request("POST", "/echo", body=iter(parts), encode_chunked=True,
                     headers={"x-pw": "reqb.buffer reqb.append=! reqb.upper_eos",
                              "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.read() == b"FIRST SECOND THIRD!"
    finally:
        conn.close()
    # the upstream gets a Content-Length for the rewritten body
    assert upstream.header_values("content-length") == ["19"]
    assert upstream.header_values("transfer-encoding") == []


def test_request_body_spooled_to_disk_is_readable_and_rewritable(nginx, upstream):
    # client_body_buffer_size 1k: nginx writes the body to a temporary file
    # as it comes; each chunk is rewritten before it is written
    start(nginx)
    body = alphabet(200000)
    r = nginx.request("/spool", method="POST", body=body, headers={"x-pw": "reqb.upper"})
    assert r.status == 200 and r.body == body.upper()
    digest = hashlib.sha256(body.upper()).hexdigest()
    assert hashlib.sha256(upstream.requests[-1][3]).hexdigest() == digest
    assert re.search(r"a client request body is buffered to a temporary file",
                     nginx.log())


def test_held_request_body_beyond_the_client_buffer(nginx, upstream):
    # Pause keeps the whole body for the plugin (up to the limit), even in a
    # location where nginx would spool it
    start(nginx)
    body = alphabet(200000)
    r = nginx.request("/spool", method="POST", body=body,
                      headers={"x-pw": "reqb.buffer reqb.upper_eos reqb.body"})
    assert r.status == 200 and r.body == body.upper()
    assert calls(nginx, "reqb")[-1] == (200000, 1)


def test_body_read_before_the_chain_from_a_temporary_file(nginx, upstream):
    # error_page into a location with a chain, after proxy_pass already read
    # (and spooled) the body: the chain gets it whole, from the file
    nginx.start("""
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        client_max_body_size 64m;
        client_body_buffer_size 1k;
        location /first {
            proxy_pass http://127.0.0.1:1;
            error_page 502 = @second;
        }
        location @second {
            proxy_wasm filter config=reqb.upper;
            proxy_pass http://@UPSTREAM@;
        }
    }
""")
    body = alphabet(50000)
    r = nginx.request("/first", method="POST", body=body)
    assert r.status == 200
    assert upstream.requests[-1][3] == body.upper()
    assert calls(nginx, "reqb") == [(len(body), 1)]


def test_request_body_over_the_limit_is_413(nginx, upstream):
    start(nginx)
    r = nginx.request("/limited", method="POST", body=b"z" * 50000,
                      headers={"x-pw": "reqb.buffer"})
    assert r.status == 413
    assert upstream.requests == []
    assert re.search(r"request body buffer limit of 10240 bytes exceeded", nginx.log())
    # streaming (no Pause) is not limited
    r = nginx.request("/limited/echo", method="POST", body=b"z" * 50000)
    assert r.status == 200


def test_response_body_streams_and_is_rewritten(nginx):
    start(nginx)
    r = nginx.request("/?size=4000000", headers={"x-pw": "respb.upper"})
    assert r.status == 200
    assert r.body == alphabet(4000000).upper()
    # the length may change: nginx chunks the response
    assert r.header("content-length") is None
    assert r.header("transfer-encoding") == "chunked"
    sizes = calls(nginx, "respb")
    assert len(sizes) > 2 and sum(s for s, _ in sizes) == 4000000


def test_buffered_response_body_gets_an_exact_length(nginx):
    start(nginx)
    r = nginx.request("/?size=300000", headers={"x-pw": "respb.buffer respb.append=END"})
    assert r.body == alphabet(300000) + b"END"
    assert r.header("content-length") == "300003"
    sizes = calls(nginx, "respb")
    assert sizes[-1] == (300000, 1)


def test_response_body_replace_and_truncate(nginx):
    start(nginx)
    r = nginx.request("/", headers={"x-pw": "respb.replace=new-body"})
    assert r.body == b"new-body"
    r = nginx.request("/?size=1000", headers={"x-pw": "respb.buffer respb.truncate=5"})
    assert r.body == b"abcde" and r.header("content-length") == "5"


def test_response_body_over_the_limit_is_500(nginx):
    start(nginx)
    r = nginx.request("/limited?size=100000", headers={"x-pw": "respb.buffer"})
    assert r.status == 500
    assert b"500 Internal Server Error" in r.body
    assert re.search(r"response body buffer limit of 10240 bytes exceeded", nginx.log())


def test_static_file_body(nginx, tmp_path):
    # file buffers (sendfile) are read for the plugin too
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.txt").write_bytes(b"static file\n" * 1000)
    nginx.start(f"""
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {{
        listen 127.0.0.1:@PORT@;
        sendfile on;
        location / {{ root {root}; proxy_wasm filter config=respb.upper; }}
        location /plain/ {{ alias {root}/; proxy_wasm filter; }}
    }}
""")
    r = nginx.request("/f.txt")
    assert r.status == 200 and r.body == b"STATIC FILE\n" * 1000
    # the whole file in one buffer with the last one: exact length; the
    # body changed, so no ranges and a weak ETag
    assert r.header("content-length") == "12000"
    assert r.header("etag").startswith('W/')
    r = nginx.request("/f.txt", headers={"range": "bytes=0-5"})
    assert r.status == 200 and len(r.body) == 12000
    # untouched, it goes as it was: ranges, strong ETag
    r = nginx.request("/plain/f.txt", headers={"range": "bytes=0-5", "x-pw": "respb.body"})
    assert r.status == 206 and r.body == b"static"
    assert not r.header("etag").startswith('W/')


def test_http2_bodies_both_ways(nginx, upstream):
    import conftest
    port2 = conftest.free_port()
    start(nginx, f"listen 127.0.0.1:{port2} http2;")
    body = alphabet(2 << 20)
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge",
                        "-X", "POST", "--data-binary", "@-",
                        "-H", "x-pw: reqb.upper respb.append=!h2",
                        "-D", "-", f"http://127.0.0.1:{port2}/echo"],
                       input=body, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    head, _, got = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), head
    assert got == body.upper() + b"!h2"
    assert upstream.requests[-1][3] == body.upper()
    assert re.search(r"request: \"POST /echo HTTP/2.0\"", nginx.log())
    sizes = calls(nginx, "reqb")
    assert len(sizes) > 1 and sum(s for s, _ in sizes) == len(body)


def test_without_body_callbacks_the_response_keeps_its_length(nginx, upstream):
    # hostcalls.wasm exports no proxy_on_*_body: nothing is held or chunked
    nginx.start("""
    proxy_wasm_module hostcalls @WASM:tests/plugins/hostcalls.wasm@;
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_wasm hostcalls; proxy_pass http://@UPSTREAM@; }
    }
""")
    r = nginx.request("/?size=100000")
    assert r.status == 200 and len(r.body) == 100000
    assert r.header("content-length") == "100000"
    r = nginx.request("/echo", method="POST", body=b"q" * 5000)
    assert r.body == b"q" * 5000


# end_of_stream comes with the last data when the length is known (Envoy
# delivers such a body in one call): a plugin that rewrites "the first N
# bytes" of each chunk, as the C++ SDK's example does, must not be called
# again with an empty chunk and write its text twice.

def test_known_length_response_ends_with_its_last_bytes(nginx):
    start(nginx)
    r = nginx.request("/?size=100", headers={"x-pw": "respb.splice=0,5,HELLO"})
    assert r.status == 200 and r.body == b"HELLO" + alphabet(100)[5:]
    assert calls(nginx, "respb") == [(100, 1)]
    # the whole body in that call: an exact length
    assert r.header("content-length") == "100"


def test_known_length_response_in_chunks_ends_with_its_last_bytes(nginx):
    start(nginx)
    r = nginx.request("/?size=1000000", headers={"x-pw": "respb.upper"})
    assert r.status == 200 and r.body == alphabet(1000000).upper()
    sizes = calls(nginx, "respb")
    assert len(sizes) > 1 and sum(s for s, _ in sizes) == 1000000
    assert all(s > 0 for s, _ in sizes)
    assert [e for _, e in sizes] == [0] * (len(sizes) - 1) + [1]


def test_chunked_response_ends_with_an_empty_call(nginx):
    # the end of a chunked body is only known from its terminating chunk
    nginx.start(FILTER.replace("proxy_pass http://@UPSTREAM@;",
                               "proxy_pass http://@UPSTREAM@; proxy_http_version 1.1;", 1)
                .replace("@EXTRA@", ""))
    r = nginx.request("/?chunked=100", headers={"x-pw": "respb.body"})
    assert r.status == 200 and r.body == alphabet(100)
    sizes = calls(nginx, "respb")
    assert sizes[-1] == (0, 1)
    assert sum(s for s, _ in sizes) == 100
    assert all(s > 0 and e == 0 for s, e in sizes[:-1])


def test_request_body_with_content_length_ends_with_its_last_bytes(nginx, upstream):
    import conftest
    port2 = conftest.free_port()
    start(nginx, f"listen 127.0.0.1:{port2} http2;")

    def check(n):
        sizes = calls(nginx, "reqb")
        assert sum(s for s, _ in sizes) == n
        assert all(s > 0 for s, _ in sizes), sizes
        assert [e for _, e in sizes] == [0] * (len(sizes) - 1) + [1], sizes
        assert upstream.requests[-1][3].count(b"HELLO") == len(sizes)
        open(nginx.error_log, "w").close()

    # /spool reads 1k at a time: whole buffers, the last one included
    for path, n in (("/echo", 300000), ("/spool", 4096)):
        r = nginx.request(path, method="POST", body=alphabet(n),
                          headers={"x-pw": "reqb.splice=0,5,HELLO"})
        assert r.status == 200
        check(n)
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge",
                            "-X", "POST", "--data-binary", "@-", "-o", "/dev/null",
                            "-H", "x-pw: reqb.splice=0,5,HELLO",
                            f"http://127.0.0.1:{port2}{path}"],
                           input=alphabet(n), capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        check(n)
