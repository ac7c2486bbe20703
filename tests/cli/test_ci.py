"""pwasm in a plugin author's CI: `pwasm test --junit/--tap` read by a
parser as a CI system would, the exit statuses of every subcommand."""
import os
import pathlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
PWASM = pathlib.Path(os.environ.get("PWASM_BIN") or BUILD / "pwasm")
EXAMPLES = BUILD / "examples"
ADD_HEADER = EXAMPLES / "add_header.wasm"


def pwasm(*args, cwd=ROOT):
    env = dict(os.environ, PWASM_BUILD_DIR=str(BUILD))
    return subprocess.run([str(PWASM), *map(str, args)], capture_output=True,
                          text=True, errors="replace", timeout=300, cwd=cwd, env=env)


PASSING = f"""\
plugin: {ADD_HEADER}
config: x-a=b
tests:
  - name: adds the header
    expect: {{response: {{headers: {{x-a: b}}}}}}
  - name: keeps the body
    response: {{body: hello}}
    expect: {{response: {{body: hello}}}}
"""

FAILING = f"""\
plugin: {ADD_HEADER}
config: x-a=b
tests:
  - name: passes
    expect: {{response: {{headers: {{x-a: b}}}}}}
  - name: "wrong <value> & \\"quotes\\" # not a TAP directive"
    response: {{body: "one\\nTWO\\n"}}
    expect:
      response: {{headers: {{x-a: c}}, body: "one\\ntwo\\n"}}
  - name: later
    skip: not today
"""


@pytest.fixture
def suite(tmp_path):
    (tmp_path / "a_pass.yaml").write_text(PASSING)
    (tmp_path / "b_fail.yaml").write_text(FAILING)
    return tmp_path


def junit(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return root


def cases(suite_el):
    return {c.get("name"): c for c in suite_el.findall("testcase")}


# ----------------------------------------------------------------- JUnit

def test_junit_counts_names_and_failures(suite):
    out = suite / "report.xml"
    r = pwasm("test", "--junit", out, suite / "a_pass.yaml", suite / "b_fail.yaml")
    assert r.returncode == 1, r.stdout + r.stderr
    # the report for people is unchanged, on stdout
    assert "  FAIL  wrong <value>" in r.stdout and "3 passed, 1 failed, 1 skipped" in r.stdout
    root = junit(out)
    assert (root.get("tests"), root.get("failures"), root.get("errors"),
            root.get("skipped")) == ("5", "1", "0", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [str(suite / "a_pass.yaml"),
                                                str(suite / "b_fail.yaml")]
    ok, bad = suites
    assert (ok.get("tests"), ok.get("failures"), ok.get("skipped")) == ("2", "0", "0")
    assert set(cases(ok)) == {"adds the header", "keeps the body"}
    for c in ok.findall("testcase"):
        assert list(c) == []  # passed: no child
        assert float(c.get("time")) >= 0
        assert c.get("classname").endswith(".a_pass")
    assert (bad.get("tests"), bad.get("failures"), bad.get("skipped")) == ("3", "1", "1")
    c = cases(bad)
    # names come back as written, escaping undone by the parser
    failed = c['wrong <value> & "quotes" # not a TAP directive']
    assert failed.get("line") == "6" and failed.get("file") == str(suite / "b_fail.yaml")
    f = failed.find("failure")
    assert f.get("message") == "response.headers x-a (line 9) (and 1 more failure)"
    assert '- expected: "c"' in f.text and '+ actual:   "b"' in f.text
    assert "- two\n" in f.text and "+ TWO\n" in f.text
    assert c["later"].find("skipped").get("message") == "not today"
    assert list(c["passes"]) == []


def test_junit_all_passing_exits_0(suite, tmp_path):
    out = tmp_path / "ok.xml"
    r = pwasm("test", "--junit", out, suite / "a_pass.yaml")
    assert r.returncode == 0, r.stdout
    root = junit(out)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "0", "0")


def test_junit_with_a_directory_a_filter_and_verbose(suite):
    out = suite / "r.xml"
    r = pwasm("test", "-v", "--filter", "^(passes|wrong)", "--junit", out, suite)
    assert r.returncode == 1
    root = junit(out)
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["passes", 'wrong <value> & "quotes" # not a TAP directive']
    # a file none of whose tests are selected is an empty suite
    assert [s.get("tests") for s in root.findall("testsuite")] == ["0", "2"]
    text = root.find(".//failure").text
    assert "what happened:" in text and "== result: complete" in text
    # the terminal shows the failure once, then what happened
    assert r.stdout.count("response.headers x-a (line 9):") == 1, r.stdout
    assert r.stdout.count("    what happened:") == 1, r.stdout
    # a filter that selects nothing is a usage error, not a green run
    r = pwasm("test", "--filter", "no such test", suite / "a_pass.yaml")
    assert r.returncode == 2
    assert 'selected no test' in r.stderr


def test_junit_errors_for_what_could_not_be_loaded(tmp_path):
    (tmp_path / "noplugin.yaml").write_text("plugin: nowhere.wasm\ntests:\n  - name: a\n")
    (tmp_path / "broken.yaml").write_text("tests: [\n")
    (tmp_path / "ok.yaml").write_text(PASSING)
    out = tmp_path / "r.xml"
    r = pwasm("test", "--junit", out, tmp_path / "broken.yaml", tmp_path / "noplugin.yaml",
              tmp_path / "ok.yaml", tmp_path / "missing.yaml")
    assert r.returncode == 3, r.stdout
    root = junit(out)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "0", "3")
    errors = {c.get("name"): c.find("error").get("message")
              for c in root.iter("testcase") if c.find("error") is not None}
    assert set(errors) == {"broken.yaml", "a", str(tmp_path / "missing.yaml")}
    assert re.match(re.escape(str(tmp_path / "broken.yaml")) + r":\d+:\d+: ", errors["broken.yaml"])
    assert "nowhere.wasm" in errors["a"]
    assert "no such file or directory" in errors[str(tmp_path / "missing.yaml")]


def test_junit_text_is_valid_xml_whatever_the_plugin_logs(tmp_path):
    # a log line with bytes XML cannot carry (control, invalid UTF-8),
    # in the "what happened" text of a failure
    t = tmp_path / "t.yaml"
    t.write_text(f"plugin: {BUILD}/tests/conformance/probe.wasm\n"
                 "config: 'request_headers log info \"\\x01\\xff</>\"'\n"
                 "tests:\n  - name: \"caf\\xe9 \\x01\"\n    expect: {outcome: paused}\n")
    out = tmp_path / "r.xml"
    r = pwasm("test", "--verbose", "--junit", out, t)
    assert r.returncode in (1, 3), r.stdout
    root = junit(out)  # parses
    assert root.find(".//testcase").get("name").startswith("café")


def test_junit_to_stdout_moves_the_report_to_stderr(suite):
    r = pwasm("test", "--junit", "-", suite / "a_pass.yaml")
    assert r.returncode == 0
    assert ET.fromstring(r.stdout).get("tests") == "2"
    assert "2 passed, 0 failed" in r.stderr


def test_junit_path_that_cannot_be_written_is_a_usage_error(suite):
    r = pwasm("test", "--junit", suite / "no" / "dir" / "r.xml", suite / "a_pass.yaml")
    assert r.returncode == 2
    assert "--junit" in r.stderr and "No such file or directory" in r.stderr
    assert "passed" not in r.stdout  # nothing ran


# ------------------------------------------------------------------- TAP

def tap_points(out):
    return re.findall(r"^(ok|not ok) (\d+) - (.*)$", out, re.M)


def test_tap_plan_and_points(suite):
    r = pwasm("test", "--tap", suite / "a_pass.yaml", suite / "b_fail.yaml")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == "TAP version 13"
    assert lines[-1] == "1..5"
    points = tap_points(r.stdout)
    assert [(ok, int(n)) for ok, n, _ in points] == [
        ("ok", 1), ("ok", 2), ("ok", 3), ("not ok", 4), ("ok", 5)]
    a, b = str(suite / "a_pass.yaml"), str(suite / "b_fail.yaml")
    assert points[0][2] == f"{a}: adds the header"
    # '#' escaped: the description is not cut into a directive
    assert points[3][2] == f'{b}: wrong <value> & "quotes" \\# not a TAP directive'
    assert points[4][2] == f"{b}: later # SKIP not today"
    # the failure as a YAML diagnostic block under its point
    m = re.search(r"^not ok 4 .*\n  ---\n(.*?)\n  \.\.\.$", r.stdout, re.M | re.S)
    diag = yaml.safe_load("\n".join(line[2:] for line in m.group(1).splitlines()))
    assert diag["message"] == "response.headers x-a (line 9) (and 1 more failure)"
    assert diag["severity"] == "fail" and diag["line"] == 6 and diag["file"] == b
    assert diag["data"].startswith("response.headers x-a (line 9):\n")
    # every stdout line is TAP; the report for people is on stderr
    for line in lines:
        assert re.match(r"TAP version 13$|1\.\.\d+$|(not )?ok \d+ - |  ", line), line
    assert "3 passed, 1 failed, 1 skipped" in r.stderr


def test_tap_with_junit_and_a_load_error(suite, tmp_path):
    out = tmp_path / "r.xml"
    r = pwasm("test", "--tap", "--junit", out, suite / "a_pass.yaml", tmp_path / "gone.yaml")
    assert r.returncode == 3
    assert r.stdout.splitlines()[-1] == "1..3"
    assert re.search(r"^not ok \d+ - .*gone\.yaml", r.stdout, re.M)
    assert "severity: error" in r.stdout
    assert junit(out).get("errors") == "1"
    r = pwasm("test", "--tap", "--junit", "-", suite / "a_pass.yaml")
    assert r.returncode == 2


# ------------------------------------------------------------ exit status

def test_exit_status_of_test(suite, tmp_path):
    assert pwasm("test", suite / "a_pass.yaml").returncode == 0
    assert pwasm("test", suite / "b_fail.yaml").returncode == 1
    assert pwasm("test", "--no-such-option", suite).returncode == 2
    assert pwasm("test").returncode == 2
    assert pwasm("test", "--filter", "(", suite).returncode == 2
    assert pwasm("test", tmp_path / "missing.yaml").returncode == 3
    (tmp_path / "empty").mkdir()
    r = pwasm("test", tmp_path / "empty")
    assert r.returncode == 3 and "no .yaml or .yml files" in r.stderr, r.stderr
    # so is another plugin of `plugins:` that is not there
    (tmp_path / "p2.yaml").write_text(
        f"plugin: {ADD_HEADER}\nconfig: x-a=b\nplugins:\n"
        "  - {plugin_name: other, plugin: nowhere.wasm}\ntests:\n  - name: a\n")
    r = pwasm("test", tmp_path / "p2.yaml")
    assert r.returncode == 3 and "nowhere.wasm" in r.stdout, r.stdout
    # a load error wins over a failure
    (tmp_path / "bad.yaml").write_text("plugin: x.wasm\ntests: {}\n")
    assert pwasm("test", suite / "b_fail.yaml", tmp_path / "bad.yaml").returncode == 3


def test_exit_status_of_run_and_bench(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("request: {bdy: x}\n")
    for cmd, extra in (("run", []), ("bench", ["-n", "10"])):
        assert pwasm(cmd, ADD_HEADER, "--config", "x-a=b", *extra).returncode == 0, cmd
        # the plugin refuses its configuration: did not start
        assert pwasm(cmd, ADD_HEADER, "--config", "nonsense", *extra).returncode == 1, cmd
        assert pwasm(cmd, "--frobnicate", ADD_HEADER).returncode == 2, cmd
        assert pwasm(cmd, ADD_HEADER, bad, *extra).returncode == 3, cmd
        assert pwasm(cmd, tmp_path / "none.wasm", *extra).returncode == 3, cmd
        assert pwasm(cmd, ADD_HEADER, "--config", f"@{tmp_path}/none", *extra).returncode == 3
    # a module of `plugins:` that is not there: could not be loaded
    other = tmp_path / "other.yaml"
    other.write_text("plugins:\n  - {plugin_name: other, plugin: nowhere.wasm}\n")
    r = pwasm("run", ADD_HEADER, "--config", "x-a=b", other)
    assert r.returncode == 3 and "nowhere.wasm" in r.stdout, r.stdout


def test_exit_status_of_inspect_and_compile(tmp_path):
    assert pwasm("inspect", ADD_HEADER).returncode == 0
    assert pwasm("inspect", BUILD / "tests/plugins/bad_import.wasm").returncode == 1
    assert pwasm("inspect").returncode == 2
    assert pwasm("inspect", tmp_path / "none.wasm").returncode == 3
    art = tmp_path / "a.pwasm"
    assert pwasm("compile", ADD_HEADER, "-o", art).returncode == 0
    assert pwasm("compile", ADD_HEADER).returncode == 2
    (tmp_path / "x.wasm").write_bytes(b"\0asm\1\0\0\0\xff")
    assert pwasm("compile", tmp_path / "x.wasm", "-o", tmp_path / "o").returncode == 3


def test_exit_statuses_are_in_the_help():
    r = pwasm("--help")
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"^  {code}  \S", r.stdout, re.M), r.stdout
    assert pwasm().returncode == 2
    assert pwasm("frobnicate").returncode == 2


# ----------------------------------------------------- self-contained pwasm

def test_the_static_pwasm_needs_only_glibc(suite, tmp_path):
    static = BUILD / "pwasm-static"
    libs = subprocess.run(["ldd", str(static)], capture_output=True, text=True, check=True).stdout
    names = sorted(line.split()[0] for line in libs.splitlines() if line.strip())
    assert [n for n in names if not re.match(r"linux-vdso\.so|libc\.so\.6$|/lib64/ld-linux", n)
            ] == [], libs
    # and it runs plugins (compiled and dlopen()ed) as build/pwasm does
    out = tmp_path / "r.xml"
    env = dict(os.environ, PWASM_BUILD_DIR=str(BUILD))
    r = subprocess.run([str(static), "test", "--junit", str(out), str(suite / "a_pass.yaml")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert junit(out).get("tests") == "2"


def test_a_plugin_repository_as_ci_runs_it(tmp_path):
    """docs/CI.md's steps, on this machine: a repository with its plugin and
    test files, the self-contained pwasm copied elsewhere, no build tree
    and no PWASM_* variable."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "plugin.wasm").write_bytes(ADD_HEADER.read_bytes())
    (repo / "tests" / "headers.yaml").write_text(
        "plugin: ../plugin.wasm\nconfig: x-a=b\ntests:\n"
        "  - name: adds x-a\n    expect: {response: {headers: {x-a: b}}}\n"
        "  - name: a bug\n    expect: {response: {headers: {x-a: c}}}\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "pwasm"
    tool.write_bytes((BUILD / "pwasm-static").read_bytes())
    tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PWASM_")}
    env["PATH"] = f"{bindir}:/usr/bin:/bin"
    r = subprocess.run(["pwasm", "test", "--junit", "pwasm-report.xml", "tests/"], cwd=repo,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 passed, 1 failed" in r.stdout
    root = junit(repo / "pwasm-report.xml")
    assert (root.get("tests"), root.get("failures")) == ("2", "1")
    assert root.find(".//failure").get("message") == "response.headers x-a (line 7)"


def test_the_ci_examples_are_valid_and_publish_what_pwasm_writes():
    text = (ROOT / "docs" / "CI.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    gh, gl = blocks
    steps = gh["jobs"]["pwasm-test"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    report = re.search(r"pwasm test --junit (\S+) ", runs).group(1)
    publish = [s for s in steps if "junit" in s.get("uses", "")]
    assert publish and publish[0]["with"]["report_paths"] == report
    assert publish[0]["if"] == "always()"
    script = "\n".join(gl["pwasm-test"]["script"])
    assert re.search(r"pwasm test --junit (\S+) ", script).group(1) == \
        gl["pwasm-test"]["artifacts"]["reports"]["junit"]
    assert gl["pwasm-test"]["artifacts"]["when"] == "always"
    # each installs what pwasm compiles plugins with
    for install in (runs, "\n".join(gl["pwasm-test"]["before_script"])):
        assert re.search(r"apt-get install .*\bwabt\b.*\bgcc\b", install), install


SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def can_chroot():
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not can_chroot(), reason="needs root and mount namespaces (chroot, bind mount)")
def test_the_static_pwasm_runs_artifacts_on_a_system_of_glibc_alone(tmp_path):
    """A CI image with no compiler, no wasm2c, no library but glibc's: the
    static pwasm tests a plugin compiled beforehand (pwasm compile)."""
    root = tmp_path / "root"
    for d in ("bin", "lib64", "lib/x86_64-linux-gnu", "proc", "tmp", "repo/tests"):
        (root / d).mkdir(parents=True)
    libs = subprocess.run(["ldd", str(BUILD / "pwasm-static")], capture_output=True,
                          text=True, check=True).stdout
    # the loader and libc the binary names, and libm the compiled plugin links
    paths = re.findall(r"(/\S+\.so[.\d]*)", libs)
    libc = next(p for p in paths if "libc.so" in p)
    paths.append(str(pathlib.Path(libc).with_name("libm.so.6")))
    for p in paths:
        dest = root / pathlib.Path(p).relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pathlib.Path(p).resolve(), dest)  # with its mode: ld.so runs
    (root / "bin" / "pwasm").write_bytes((BUILD / "pwasm-static").read_bytes())
    (root / "bin" / "pwasm").chmod(0o755)
    r = pwasm("compile", ADD_HEADER, "-o", root / "repo" / "add_header.pwasm")
    assert r.returncode == 0, r.stderr
    (root / "repo" / "tests" / "t.yaml").write_text(
        "plugin: ../add_header.pwasm\nconfig: x-a=b\ntests:\n"
        "  - name: adds x-a\n    expect: {response: {headers: {x-a: b}}}\n")
    # the artifact is loaded from memory through /proc/self/fd
    script = (f"mount --bind /proc {root}/proc && cd {root} && "
              "exec chroot . /bin/pwasm test --junit /repo/r.xml /repo/tests")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120, env=SYSTEM_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 0 failed" in r.stdout
    assert junit(root / "repo" / "r.xml").get("tests") == "1"
    # nothing there to compile a .wasm with: a load error, status 3
    (root / "repo" / "add_header.wasm").write_bytes(ADD_HEADER.read_bytes())
    (root / "repo" / "tests" / "t.yaml").write_text(
        "plugin: ../add_header.wasm\nconfig: x-a=b\ntests:\n  - name: needs wasm2c\n")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120, env=SYSTEM_ENV)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "wasm2c" in r.stdout, r.stdout
