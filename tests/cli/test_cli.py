"""pwasm run, test, bench, compile (and inspect's additions) on the C and
AssemblyScript examples: what a plugin author sees."""
import json
import os
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
# PWASM_BIN: another build of the tool (make asan-test-cli: the sanitizer one).
PWASM = pathlib.Path(os.environ.get("PWASM_BIN") or BUILD / "pwasm")
HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
EXAMPLES = BUILD / "examples"


def pwasm(*args, cwd=ROOT):
    env = dict(os.environ, PWASM_BUILD_DIR=str(BUILD))
    return subprocess.run([str(PWASM), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


# ------------------------------------------------------------------ help

@pytest.mark.parametrize("cmd", ["inspect", "compile", "run", "test", "bench"])
def test_every_subcommand_has_help(cmd):
    r = pwasm(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: pwasm {cmd}")


def test_tool_help_lists_the_subcommands():
    r = pwasm("--help")
    assert r.returncode == 0
    for cmd in ["inspect", "compile", "run", "test", "bench"]:
        assert f"pwasm {cmd}" in r.stdout
    r = pwasm("frobnicate")
    assert r.returncode == 2
    assert 'unknown command "frobnicate"' in r.stderr


def test_missing_arguments_are_usage_errors():
    for cmd in ["inspect", "compile", "run", "test", "bench"]:
        r = pwasm(cmd)
        assert r.returncode == 2, cmd
        assert "usage: pwasm" in r.stderr


# --------------------------------------------------------------- inspect

def test_inspect_guesses_the_sdk_and_groups_imports():
    r = pwasm("inspect", EXAMPLES / "deny.wasm")
    assert r.returncode == 0, r.stderr
    assert "sdk:        C (pwasm C SDK)" in r.stdout
    assert "  header maps:\n" in r.stdout
    assert "  stream control, local responses:\n" in r.stdout
    assert "memory:     2 pages initial (128 KiB)" in r.stdout
    r = pwasm("inspect", EXAMPLES / "as_add_header.wasm")
    assert "sdk:        AssemblyScript (solo-io/proxy-runtime)" in r.stdout
    assert "  WASI:\n" in r.stdout


def test_inspect_says_which_imports_are_not_implemented_yet():
    r = pwasm("inspect", BUILD / "tests/plugins/hostcalls.wasm")
    assert r.returncode == 0
    # Callouts are implemented (the CLI answers them from fixtures).
    assert re.search(r"env\.proxy_http_call .*\[ok\]$", r.stdout, re.M)
    assert re.search(r"env\.proxy_call_foreign_function .*\[ok\]$", r.stdout, re.M)
    assert re.search(r"env\.proxy_clear_route_cache .*\[ok\] returns Unimplemented",
                     r.stdout)
    assert "not implemented yet: they return Unimplemented" in r.stdout


# ---------------------------------------------------------------- compile

def test_compile_makes_an_artifact_run_and_test_accept(tmp_path):
    art = tmp_path / "add_header.pwasm"
    r = pwasm("compile", EXAMPLES / "add_header.wasm", "-o", art)
    assert r.returncode == 0, r.stderr
    assert art.read_bytes()[:8] == b"PWASMAOT"
    r = pwasm("inspect", art)
    assert "pwasm compile artifact" in r.stdout
    assert "abi:        0.2.1" in r.stdout
    r = pwasm("run", art, "--config", "x-from=artifact")
    assert r.returncode == 0, r.stderr
    assert "x-from: artifact" in r.stdout
    t = tmp_path / "t.yaml"
    t.write_text(f"plugin: {art}\nconfig: x-a=b\ntests:\n"
                 "  - name: artifact\n"
                 "    expect: {response: {headers: {x-a: b}}}\n")
    r = pwasm("test", t)
    assert r.returncode == 0, r.stdout
    assert "1 passed, 0 failed" in r.stdout


def test_compile_assemblyscript(tmp_path):
    art = tmp_path / "as.pwasm"
    r = pwasm("compile", EXAMPLES / "as_add_header.wasm", "-o", art)
    assert r.returncode == 0, r.stderr
    r = pwasm("run", "--root-id", "add_header", art)
    assert r.returncode == 0, r.stderr
    assert "x-powered-by: pwasm-assemblyscript" in r.stdout


def test_run_hints_at_the_root_id_of_assemblyscript_plugins():
    r = pwasm("run", EXAMPLES / "as_add_header.wasm")
    assert r.returncode == 1
    assert "== result: start_failed" in r.stdout
    assert "give --root-id" in r.stdout


def test_compile_refuses_what_is_not_a_plugin(tmp_path):
    bad = tmp_path / "x.wasm"
    bad.write_bytes(b"hello")
    r = pwasm("compile", bad, "-o", tmp_path / "out")
    assert r.returncode == 3
    assert "not a Wasm module" in r.stderr
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------- run

def test_run_c_example_prints_each_phase():
    r = pwasm("run", EXAMPLES / "add_header.wasm", "--config", "x-powered-by=pwasm",
              FIXTURES / "get.yaml")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert ("-- request_headers: proxy_on_request_headers (5 headers, end_of_stream) "
            "-> continue") in out
    assert "-- response_headers: proxy_on_response_headers (2 headers) -> continue" in out
    assert "     x-powered-by: pwasm\n" in out
    assert 'log info: root 1 adds "x-powered-by: pwasm" to responses' in out
    assert "== result: complete" in out
    assert 'body (12 bytes): "hello world\\n"' in out


def test_run_trace_shows_the_expected_hostcalls():
    r = pwasm("run", "--trace", EXAMPLES / "add_header.wasm", "--config", "x-a=b")
    assert ('> proxy_get_buffer_bytes(buffer=plugin_configuration, start=0, '
            'max_size=4294967295) -> Ok, data="x-a=b"') in r.stdout
    assert ('> proxy_add_header_map_value(map=response_headers, key="x-a", value="b") '
            '-> Ok') in r.stdout

    r = pwasm("run", "--trace", EXAMPLES / "deny.wasm", "--config", "x-api-key",
              FIXTURES / "get.yaml")
    out = r.stdout
    assert '> proxy_get_header_map_value(map=request_headers, key="x-api-key") -> NotFound' in out
    assert ('> proxy_send_local_response(status=403, details="", body="forbidden\\n", '
            'headers={"content-type": "text/plain"}, grpc_status=-1) -> Ok') in out
    assert "-> local_response" in out
    assert "== result: local_response" in out
    assert "upstream request: not sent" in out

    r = pwasm("run", "--trace", "--root-id", "add_header", EXAMPLES / "as_add_header.wasm")
    out = r.stdout
    assert '> proxy_get_property(path="plugin_root_id") -> Ok, value="add_header"' in out
    assert ('> proxy_add_header_map_value(map=request_headers, key="x-as-request", '
            'value="1") -> Ok') in out
    assert ('> proxy_add_header_map_value(map=response_headers, key="x-powered-by", '
            'value="pwasm-assemblyscript") -> Ok') in out


def test_run_body_example_with_chunks():
    r = pwasm("run", EXAMPLES / "body_replace.wasm", "--config", "hello=bye",
              FIXTURES / "post.yaml")
    assert r.returncode == 0, r.stderr
    assert "-- response_body: proxy_on_response_body (6 bytes) -> pause" in r.stdout
    assert "-- response_body: proxy_on_response_body (12 bytes, end_of_stream) -> continue" \
        in r.stdout
    assert 'body (10 bytes): "bye world\\n"' in r.stdout


def test_run_config_from_a_file(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("x-from=file")
    r = pwasm("run", EXAMPLES / "add_header.wasm", "--config", f"@{cfg}")
    assert r.returncode == 0, r.stderr
    assert "x-from: file" in r.stdout
    r = pwasm("run", EXAMPLES / "add_header.wasm", "--config", f"@{tmp_path}/missing")
    assert r.returncode == 3
    assert "cannot read" in r.stderr


def test_run_flags_unimplemented_hostcalls_without_trace(tmp_path):
    fx = tmp_path / "fx.yaml"
    fx.write_text("request:\n  headers: {x-test: unimplemented}\n")
    r = pwasm("run", BUILD / "tests/plugins/hostcalls.wasm", fx)
    assert r.returncode == 0, r.stderr
    assert re.search(r"   ! proxy_clear_route_cache\(.*Unimplemented "
                     r"\(not implemented in pwasm yet\)", r.stdout)
    # A callout no fixture entry answers: Ok, then a failure, and said so.
    assert "! proxy_http_call" not in r.stdout
    assert re.search(r'note: http_call "127.0.0.1:1" GET / \(token 1\): unexpected', r.stdout)
    assert re.search(r"token 1 http_call .*UNEXPECTED", r.stdout)
    # Shared data is implemented now (the CLI's store): shown with --trace only.
    assert "proxy_set_shared_data" not in r.stdout
    r = pwasm("run", "--trace", BUILD / "tests/plugins/hostcalls.wasm", fx)
    assert re.search(r"   > proxy_set_shared_data\(key=\"k\", value=\"v\", cas=0\) -> Ok$",
                     r.stdout, re.M)


def test_run_reports_a_plugin_that_does_not_start():
    r = pwasm("run", EXAMPLES / "add_header.wasm", "--config", "nonsense")
    assert r.returncode == 1
    assert "== result: start_failed" in r.stdout
    assert "no '=' in configuration" in r.stdout


def test_run_reports_a_trap(tmp_path):
    fx = tmp_path / "fx.yaml"
    fx.write_text("request:\n  headers: {x-trap: unreachable}\n")
    r = pwasm("run", BUILD / "tests/plugins/trap.wasm", fx)
    assert r.returncode == 0
    assert "== result: failed in request_headers" in r.stdout
    assert ":status: 503" in r.stdout


def test_run_bad_fixture_has_line_and_column(tmp_path):
    fx = tmp_path / "fx.yaml"
    fx.write_text("request:\n  headers:\n    a: b\n  bdy: x\n")
    r = pwasm("run", EXAMPLES / "deny.wasm", fx)
    assert r.returncode == 3
    assert f"{fx}:4:3: unknown key \"bdy\" in request" in r.stderr


# ------------------------------------------------------------------- test

def test_examples_pass():
    r = pwasm("test", HERE / "examples")
    assert r.returncode == 0, r.stdout
    assert re.search(r"^\d+ passed, 0 failed$", r.stdout, re.M)
    assert "  ok    adds the configured response header" in r.stdout


def test_failing_expectations_exit_1_with_a_readable_diff(tmp_path):
    t = tmp_path / "fail.yaml"
    t.write_text(f"""plugin: {EXAMPLES}/add_header.wasm
config: x-a=b
tests:
  - name: passes
    expect: {{response: {{headers: {{x-a: b}}}}}}
  - name: wrong header and body
    response:
      headers: {{":status": "200"}}
      body: "one\\ntwo\\n"
    expect:
      response:
        headers: {{x-a: c, x-b: ~}}
        body: "one\\nTWO\\n"
      log: ['nothing like this']
      actions: {{response_headers: pause}}
""")
    r = pwasm("test", t)
    assert r.returncode == 1
    out = r.stdout
    assert "  ok    passes" in out
    assert "  FAIL  wrong header and body" in out
    assert ("    response.headers x-a (line 12):\n"
            "      - expected: \"c\"\n"
            "      + actual:   \"b\"\n") in out
    assert ("    response.body (expected 8 bytes, got 8) (line 13):\n"
            "        one\n"
            "      - TWO\n"
            "      + two\n") in out
    assert "      - expected: a line matching /nothing like this/" in out
    assert ("    response_headers (line 15):\n"
            "      - expected: pause\n"
            "      + actual:   continue\n") in out
    assert out.rstrip().endswith("1 passed, 1 failed")


def test_verbose_shows_what_happened(tmp_path):
    t = tmp_path / "fail.yaml"
    t.write_text(f"plugin: {EXAMPLES}/add_header.wasm\nconfig: x-a=b\ntests:\n"
                 "  - expect: {outcome: paused}\n")
    r = pwasm("test", "--trace", t)
    assert r.returncode == 1
    assert "  FAIL  test 1" in r.stdout
    assert "    what happened:" in r.stdout
    assert "> proxy_add_header_map_value(" in r.stdout


def test_store_expectations_show_what_the_store_has(tmp_path):
    t = tmp_path / "m.yaml"
    t.write_text(f"""plugin: {EXAMPLES}/shared_counter.wasm
config: writer
tests:
  - name: m
    expect:
      metrics: {{requests_total: 1, shared_counter_requests_total: 2}}
      shared_data: {{requests: !uint 2, other: x}}
  - name: absent
    expect:
      metrics: {{shared_counter_requests_total: ~}}
      shared_data: {{requests: ~}}
""")
    r = pwasm("test", t)
    assert r.returncode == 1
    out = r.stdout
    assert ("    metric requests_total (line 6):\n"
            "      - expected: 1\n"
            "      + actual:   (absent)\n") in out
    assert ("    metric shared_counter_requests_total (line 6):\n"
            "      - expected: 2\n"
            "      + actual:   1 (counter)\n") in out
    assert re.search(r'    shared_data requests \(line 7\):\n'
                     r'      - expected: "\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00"\n'
                     r'      \+ actual:   "\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00" \(cas \d+\)\n', out)
    assert ("    shared_data other (line 7):\n"
            "      - expected: \"x\"\n"
            "      + actual:   (absent)\n") in out
    assert "      - expected: (absent)\n      + actual:   1 (counter)\n" in out
    assert "not supported yet" not in out
    assert out.rstrip().endswith("0 passed, 2 failed")


def test_steps_share_the_store_and_have_their_own_expectations(tmp_path):
    t = tmp_path / "s.yaml"
    t.write_text(f"""plugin: {EXAMPLES}/shared_counter.wasm
vm_id: c
root_id: writer
config: writer
plugins: [{{root_id: reader, config: reader}}]
tests:
  - name: steps
    steps:
      - repeat: 2
      - through: reader
        name: the reader shows it
        expect:
          response: {{headers: {{x-count: "3"}}}}
          log: ['requests = 2']
    expect:
      shared_data: {{requests: !uint 2}}
""")
    r = pwasm("test", t)
    assert r.returncode == 1
    assert ("    step 2 \"the reader shows it\" (line 10):\n"
            "      response.headers x-count (line 13):\n"
            "        - expected: \"3\"\n"
            "        + actual:   \"2\"\n") in r.stdout
    assert "      log (line 14):\n" not in r.stdout
    assert "1 failed" in r.stdout


def test_step_through_an_unknown_plugin_fails(tmp_path):
    t = tmp_path / "s.yaml"
    t.write_text(f"plugin: {EXAMPLES}/shared_counter.wasm\nconfig: writer\ntests:\n"
                 "  - steps: [{through: nobody}]\n")
    r = pwasm("test", t)
    assert r.returncode == 1
    assert 'step 1 (line 4): no plugin named "nobody"' in r.stdout


@pytest.mark.parametrize("item, message", [
    ("steps: [{advance: soon}]", "advance: expected a duration"),
    ("steps: [{advance: 1s, through: x}]", "a step: give advance or through, not both"),
    ("steps: [{repeat: 0}]", "repeat: expected 1 to 100000"),
    ("steps: [{rpeat: 2}]", 'unknown key "rpeat" in a step'),
    ("connection: [{downstream: a, upstream: b}]",
     "connection: each event is a mapping of one key"),
    ("connection: [{downstrem: a}]", 'unknown key "downstrem" in a connection event'),
    ("connection: [{downstream_close: true}, {downstream: late}]",
     "downstream: that side was closed before (line 3)"),
    ("connection: [{upstream_close: maybe}]", "upstream_close: expected true"),
    ("connection: [{advance: soon}]", "advance: expected a duration"),
    ("connection: {downstream: a}", "connection: expected a list of events"),
])
def test_bad_steps_and_connections_have_line_and_column(tmp_path, item, message):
    t = tmp_path / "s.yaml"
    t.write_text(f"plugin: {EXAMPLES}/shared_counter.wasm\ntests:\n  - {item}\n")
    r = pwasm("test", t)
    assert r.returncode == 3
    assert re.search(re.escape(str(t)) + r":3:\d+: " + re.escape(message), r.stdout), r.stdout


def test_run_prints_steps_ticks_and_queue_deliveries(tmp_path):
    fx = tmp_path / "fx.yaml"
    fx.write_text("""vm_id: tokens
root_id: refresher
config: refresher 1000
plugins: [{root_id: filter, config: filter}]
clock: 2024-01-01T00:00:00Z
steps:
  - through: filter
  - advance: 1500ms
  - through: filter
""")
    r = pwasm("run", "--trace", EXAMPLES / "token_refresh.wasm", fx)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "-- start (refresher): " in out and "-- start (filter): " in out
    assert "   note: refresher: tick period 1000 ms\n" in out
    assert "== step 1 (line 7, at 0 ms): 1 exchange through filter\n" in out
    assert "== result: local_response\n" in out
    assert "== step 2 (line 8, at 0 ms): advance 1500 ms\n" in out
    assert "-- tick (refresher): proxy_on_tick at 1000 ms\n" in out
    assert "-- tick (refresher): proxy_on_tick at 2000 ms" not in out
    assert "-- queue_ready (tokens): proxy_on_queue_ready (1 call)\n" in out
    assert re.search(r"> proxy_enqueue_shared_queue\(queue_id=1, value=\"tok-1\"\) -> Ok$",
                     out, re.M)
    assert re.search(r"> proxy_dequeue_shared_queue\(queue_id=1\) -> Ok, value=\"tok-1\"$",
                     out, re.M)
    assert re.search(r"> proxy_define_metric\(type=counter, "
                     r"name=\"token_refresh_renewals_total\"\) -> Ok, metric_id=\d+$", out, re.M)
    assert re.search(r"> proxy_set_tick_period_milliseconds\(period_ms=1000\) -> Ok$", out, re.M)
    assert "authorization: Bearer tok-1" in out
    assert out.rstrip().endswith("in ticks, queue deliveries and callout answers")


# ------------------------------------------------------ TCP connections

TCP = BUILD / "tests/plugins/tcp.wasm"

TCP_FIXTURE = """connection:
  - downstream: "hel"
  - downstream: "lo\\n"
  - upstream: "abc"
  - downstream: "bye"
  - downstream_close: true
  - upstream_close: true
"""


def test_run_replays_a_tcp_connection(tmp_path):
    fx = tmp_path / "conn.yaml"
    fx.write_text(TCP_FIXTURE)
    r = pwasm("run", TCP, fx)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert ("-- new_connection: proxy_on_new_connection -> continue\n"
            "   log info: on_new_connection ctx=2 http_continue=2\n") in out
    # a partial line is held, then the whole line is rewritten and goes on
    assert ("-- downstream_data: proxy_on_downstream_data (3 bytes) -> pause\n"
            "   log info: on_downstream_data ctx=2 size=3 eos=0 data=hel\n"
            "   data before (3 bytes): \"hel\"\n"
            "   data after  (3 bytes): \"hel\"\n"
            "     -> held\n") in out
    assert ("-- downstream_data: proxy_on_downstream_data (6 bytes) -> continue\n"
            "   log info: on_downstream_data ctx=2 size=6 eos=0 data=hello\\n\n"
            "   data before (6 bytes): \"hello\\n\"\n"
            "   data after  (6 bytes): \"HELLO\\n\"\n"
            "     -> forwarded to the upstream\n") in out
    assert ("   data after  (4 bytes): \"<abc\"\n"
            "     -> forwarded to the client\n") in out
    # the client's last bytes come with its end of stream, then its close
    assert "-- downstream_data: proxy_on_downstream_data (3 bytes, end_of_stream) -> continue\n" in out
    assert ("-- downstream_close: proxy_on_downstream_connection_close "
            "(peer remote: the peer closed it)\n") in out
    # the server closes without bytes: an empty end of stream first
    assert "-- upstream_data: proxy_on_upstream_data (0 bytes, end_of_stream) -> continue\n" in out
    assert "-- end: proxy_on_done, proxy_on_log, proxy_on_delete\n" in out
    assert out.index("log info: on_done ctx=2") < out.index("log info: on_log ctx=2")
    assert ("== result: complete\n"
            "   connection 1: not closed by the plugin\n"
            "   forwarded to the upstream (9 bytes): \"HELLO\\nbye\"\n"
            "   forwarded to the client (5 bytes): \"<abc<\"\n") in out
    r = pwasm("run", "--trace", TCP, fx)
    assert ("   > proxy_set_buffer_bytes(buffer=upstream_data, start=0, size=0, data=\"<\") -> Ok"
            in r.stdout), r.stdout


def test_run_shows_a_close_by_the_plugin(tmp_path):
    fx = tmp_path / "conn.yaml"
    fx.write_text("connection:\n  - downstream: close\n  - upstream: late\n")
    r = pwasm("run", TCP, fx)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "-- downstream_data: proxy_on_downstream_data (5 bytes) -> continue, closed\n" in out
    assert "   note: proxy_close_stream in downstream_data: the connection is closed at 0 ms\n" in out
    assert "(from line 3) not delivered" in out
    assert "(peer local: the proxy closed it)" in out
    assert ("== result: closed in downstream_data\n"
            "   connection 1: closed by the plugin in downstream_data at 0 ms\n") in out
    assert "-- upstream_data" not in out


def test_failing_tcp_expectations_name_the_direction_and_show_both_bytes(tmp_path):
    t = tmp_path / "tcp.yaml"
    t.write_text(f"""plugin: {TCP}
connection:
  - downstream: "hello\\n"
  - upstream: !hex "00 01"
tests:
  - name: right
    expect:
      forwarded: {{upstream: "HELLO\\n", downstream: !hex "3c 00 01"}}
      closed_by_plugin: false
  - name: wrong
    expect:
      forwarded:
        upstream: "hello\\n"
        downstream_matches: "^<x"
      closed_by_plugin: true
      actions: {{downstream_data: pause}}
""")
    r = pwasm("test", t)
    assert r.returncode == 1
    out = r.stdout
    assert "  ok    right\n" in out
    assert "  FAIL  wrong\n" in out
    assert ("    forwarded.upstream (bytes sent to the server) (line 13):\n"
            "      - expected: \"hello\\n\" (6 bytes)\n"
            "      + actual:   \"HELLO\\n\" (6 bytes)\n") in out
    assert ("    forwarded.downstream_matches (bytes sent to the client) (line 14):\n"
            "      - expected: matching /^<x/\n"
            "      + actual:   \"<\\x00\\x01\"\n") in out
    assert ("    closed_by_plugin (line 15):\n"
            "      - expected: true\n"
            "      + actual:   false\n") in out
    assert ("    downstream_data (line 16):\n"
            "      - expected: pause\n"
            "      + actual:   continue\n") in out
    assert out.rstrip().endswith("1 passed, 1 failed")


def test_a_test_replaces_or_removes_its_files_connection(tmp_path):
    t = tmp_path / "inherit.yaml"
    t.write_text(f"""plugin: {BUILD}/tests/conformance/probe.wasm
connection: [{{downstream: x}}]
tests:
  - name: inherits the connection
    expect: {{forwarded: {{upstream: x}}, actions: {{request_headers: not_called}}}}
  - name: a request replaces it
    request: {{headers: {{a: b}}}}
    expect: {{request: {{headers: {{a: b}}}}, actions: {{new_connection: not_called}}}}
  - name: null removes it
    connection: ~
    expect: {{actions: {{request_headers: continue, new_connection: not_called}}}}
""")
    r = pwasm("test", t)
    assert r.returncode == 0, r.stdout
    assert r.stdout.rstrip().endswith("3 passed, 0 failed")


def test_a_connection_and_a_request_in_one_place_are_refused(tmp_path):
    fx = tmp_path / "fx.yaml"
    fx.write_text("request: {headers: {a: b}}\nconnection: [{downstream: x}]\n")
    r = pwasm("run", TCP, fx)
    assert r.returncode == 3
    assert "give connection or request/response, not both" in r.stderr


def test_bad_yaml_has_line_and_column(tmp_path):
    t = tmp_path / "bad.yaml"
    t.write_text("plugin: x.wasm\ntests:\n  - name: a\n    expect: {log: [a, b}\n")
    r = pwasm("test", t)
    assert r.returncode == 3
    assert re.search(re.escape(str(t)) + r":4:\d+: did not find expected ',' or ']'",
                     r.stdout)
    assert "0 passed, 1 failed" in r.stdout


def test_unknown_keys_have_line_and_column(tmp_path):
    t = tmp_path / "typo.yaml"
    t.write_text(f"plugin: {EXAMPLES}/add_header.wasm\ntests:\n"
                 "  - name: typo\n    expect:\n      respnse: {}\n")
    r = pwasm("test", t)
    assert r.returncode == 3
    assert f"{t}:5:7: unknown key \"respnse\" in expect" in r.stdout


def test_missing_plugin_fails_the_test(tmp_path):
    t = tmp_path / "nop.yaml"
    t.write_text("plugin: nowhere.wasm\ntests:\n  - name: a\n")
    r = pwasm("test", t)
    assert r.returncode == 3
    assert "nowhere.wasm" in r.stdout


def test_directories_are_searched_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["b/2.yaml", "1.yml"]:
        (tmp_path / name).write_text(
            f"plugin: {EXAMPLES}/add_header.wasm\nconfig: x-a=b\ntests:\n  - name: {name}\n")
    (tmp_path / "notes.txt").write_text("not a test")
    r = pwasm("test", tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.index("1.yml") < r.stdout.index("2.yaml")
    assert "2 passed, 0 failed" in r.stdout


# ------------------------------------------------------------------ bench

def test_bench_text():
    r = pwasm("bench", EXAMPLES / "add_header.wasm", FIXTURES / "get.yaml", "-n", "500",
              "--config", "x-a=b")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^time:       mean \d+ ns, p50 \d+ ns, p99 \d+ ns per request", r.stdout,
                     re.M)
    assert "hostcalls:  2 per request" in r.stdout
    assert "memory:     131072 bytes of guest linear memory" in r.stdout


@pytest.mark.parametrize("plugin,args,outcome,hostcalls", [
    ("add_header.wasm", ["--config", "x-a=b"], "complete", 2),
    ("deny.wasm", ["--config", "x-api-key"], "local_response", 3),
    # proxy-runtime logs its context bookkeeping whatever the level.
    ("as_add_header.wasm", ["--root-id", "add_header"], "complete", 15),
])
def test_bench_json(plugin, args, outcome, hostcalls):
    r = pwasm("bench", EXAMPLES / plugin, FIXTURES / "get.yaml", "-n", "300", "--json", *args)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["requests"] == 300
    assert j["outcome"] == outcome
    assert j["hostcalls_per_request"] == hostcalls
    assert 0 < j["p50_ns"] <= j["p99_ns"] <= j["max_ns"]
    assert j["min_ns"] <= j["mean_ns"] <= j["max_ns"]
    assert j["guest_memory_bytes"] >= 65536


def test_bench_refuses_a_bad_count():
    r = pwasm("bench", EXAMPLES / "add_header.wasm", "-n", "0")
    assert r.returncode == 2


# ------------------------------------------------ what a new user runs into

def test_missing_arguments_are_named_before_the_usage():
    r = pwasm("run")
    assert r.returncode == 2
    assert r.stderr.startswith("pwasm run: missing PLUGIN"), r.stderr
    assert "usage: pwasm run" in r.stderr
    r = pwasm("compile", EXAMPLES / "deny.wasm")
    assert r.returncode == 2
    assert r.stderr.startswith("pwasm compile: missing -o OUT"), r.stderr
    assert "usage: pwasm compile" in r.stderr
    r = pwasm("compile", "-o", "/tmp/x.pwasm")
    assert r.stderr.startswith("pwasm compile: missing PLUGIN.wasm"), r.stderr
    r = pwasm("test")
    assert r.returncode == 2
    assert r.stderr.startswith("pwasm test: missing FILE or DIR"), r.stderr


def test_a_yaml_error_has_one_location(tmp_path):
    t = tmp_path / "typo.yaml"
    t.write_text(f"plugin: {EXAMPLES / 'add_header.wasm'}\nconfig: x-a=b\ntests:\n"
                 "  - name: a\n    expect:\n      response:\n        body: {x: 1}\n")
    r = pwasm("test", t)
    assert r.returncode == 3
    assert f"{t}:7:15: expected a string" in r.stdout, r.stdout
    assert r.stdout.count(f"{t}:") == 1, r.stdout


def test_version():
    r = pwasm("--version")
    assert r.returncode == 0
    assert re.match(r"pwasm \d+\.\d+\.\d+ ", r.stdout), r.stdout


# ---------------------------------------------------------- capabilities

def test_run_reports_denied_imports_and_the_plugin_still_runs(tmp_path):
    fx = tmp_path / "fx.yaml"
    fx.write_text("capabilities: deny=headers,metrics\nconfig: x-a=b\n")
    r = pwasm("run", EXAMPLES / "add_header.wasm", fx)
    assert r.returncode == 0, r.stderr
    assert re.search(r'warning: module "add_header" imports env\.proxy_add_header_map_value '
                     r'of capability "headers", which is denied: it answers Unimplemented',
                     r.stderr), r.stderr
    client = r.stdout.split("response to the client:")[1]
    assert "-> Unimplemented" in r.stdout and "x-a" not in client, r.stdout
    # an unknown group is refused, naming it and the known ones
    fx.write_text("capabilities: deny=headers,sockets\n")
    r = pwasm("run", EXAMPLES / "add_header.wasm", fx)
    assert r.returncode == 3
    assert 'unknown capability "sockets"' in r.stderr and "http_call" in r.stderr, r.stderr
    fx.write_text("config: x-a=b\n")
    r = pwasm("run", EXAMPLES / "add_header.wasm", fx)
    client = r.stdout.split("response to the client:")[1]
    assert r.returncode == 0 and "x-a: b" in client and "warning" not in r.stderr, r
