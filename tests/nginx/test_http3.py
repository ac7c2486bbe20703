"""HTTP/3 through proxy_wasm: requests over QUIC to an nginx built with
--with-http_v3_module (nginx >= 1.25, e.g. the ones `make
test-nginx-sources` builds; Debian bookworm's 1.22 has no HTTP/3), sent by
Debian's ngtcp2 example client (gtlsclient, package ngtcp2-client; Debian's
curl has no HTTP/3), through filter.wasm: request headers in, response
headers out, a local response, request and response bodies.

Skipped, with the reason, when the nginx under test has no HTTP/3 or the
client is not installed."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import NGINX

CLIENT = shutil.which("gtlsclient")


def nginx_has_http3():
    p = subprocess.run([NGINX, "-V"], capture_output=True, text=True)
    return "--with-http_v3_module" in p.stderr, p.stderr.splitlines()[0]


HAS_HTTP3, VERSION = nginx_has_http3()
pytestmark = [
    pytest.mark.skipif(not HAS_HTTP3, reason=f"{NGINX} ({VERSION}) was built without "
                       "--with-http_v3_module: HTTP/3 needs an nginx >= 1.25 built with it "
                       "(make test-nginx-sources)"),
    pytest.mark.skipif(CLIENT is None, reason="no HTTP/3 client: gtlsclient (Debian's "
                       "ngtcp2-client, installed by make deps) is missing"),
]

HTTP3 = """
    proxy_wasm_module filter @WASM:tests/nginx/plugins/filter.wasm@;
    server {
        listen 127.0.0.1:@PORT@ ssl;
        listen 127.0.0.1:@PORT@ quic reuseport;
        ssl_certificate @PKI@/cert.pem;
        ssl_certificate_key @PKI@/key.pem;
        ssl_protocols TLSv1.3;
        location /hdr {
            proxy_wasm filter "config=reqh.prop=request.protocol reqh.header=x-in:over-h3 resph.header=x-out:yes";
            proxy_pass http://@UPSTREAM@;
        }
        location /local {
            proxy_wasm filter config=reqh.local=418;
            proxy_pass http://@UPSTREAM@;
        }
        location /echo {
            proxy_wasm filter "config=reqb.buffer reqb.upper_eos respb.append=|from-plugin";
            proxy_pass http://@UPSTREAM@;
        }
    }
"""


@pytest.fixture
def h3(nginx, tmp_path):
    """nginx listening on TCP (TLS) and UDP (QUIC) on the same port, with a
    self-signed certificate."""
    pki = tmp_path / "pki"
    pki.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "cert.pem"],
                   cwd=pki, check=True, capture_output=True)
    nginx.start(HTTP3.replace("@PKI@", str(pki)))
    return nginx


def get(nginx, tmp_path, path, method="GET", body=None):
    """One request over HTTP/3; returns (status, [(name, value)], body)."""
    out = tmp_path / "download"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    cmd = [CLIENT, "--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump",
           "--timeout=10s", f"--download={out}", "-m", method]
    if body is not None:
        data = tmp_path / "request-body"
        data.write_bytes(body)
        cmd += ["-d", str(data)]
    cmd += ["127.0.0.1", str(nginx.port), f"https://127.0.0.1:{nginx.port}{path}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    text = p.stdout + p.stderr
    assert "Negotiated ALPN is h3" in text, text[-3000:]
    headers = re.findall(r"^http: stream 0x0 \[([^:\]]+|:status): (.*)\]$", text, re.M)
    assert headers, text[-3000:]
    files = list(out.iterdir())
    received = files[0].read_bytes() if files else b""
    status = int(dict(headers)[":status"])
    return status, [(k.lower(), v) for k, v in headers if k != ":status"], received


def test_headers_in_and_out_over_http3(h3, upstream, tmp_path):
    status, headers, body = get(h3, tmp_path, "/hdr")
    assert status == 200
    assert ("x-out", "yes") in headers
    assert body == b"upstream ok\n"
    # the request header the plugin added reached the upstream
    assert upstream.header_values("x-in") == ["over-h3"]
    # the plugin saw the request as HTTP/3 (value in hex)
    assert h3.wait_log(r"filter: prop request\.protocol 0 " + b"HTTP/3".hex() + ",")
    assert re.search(r'request: "GET /hdr HTTP/3\.0"', h3.log())


def test_local_response_over_http3(h3, upstream, tmp_path):
    status, headers, body = get(h3, tmp_path, "/local")
    assert status == 418
    assert ("x-local", "reqh") in headers
    assert body == b"local from reqh\n"
    assert upstream.requests == []


def test_bodies_over_http3(h3, upstream, tmp_path):
    status, headers, body = get(h3, tmp_path, "/echo", method="POST",
                                body=b"a body sent over quic\n" * 100)
    assert status == 200
    # the request body upper-cased by the plugin reached the upstream,
    # which echoed it; the plugin appended to the response body
    assert upstream.requests[-1][3] == b"A BODY SENT OVER QUIC\n" * 100
    assert body == b"A BODY SENT OVER QUIC\n" * 100 + b"|from-plugin"
