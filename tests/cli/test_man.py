"""docs/pwasm.1 keeps up with the tool: every command and option the help
texts list is in the man page, the exit statuses and environment variables
are the tool's, and groff renders it without a warning."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PWASM = pathlib.Path(os.environ.get("PWASM_BIN") or ROOT / "build" / "pwasm")
MAN = ROOT / "docs" / "pwasm.1"
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "TEST FILES", "EXIT STATUS",
            "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"]


def helptext(*args):
    r = subprocess.run([str(PWASM), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def render():
    """The page as a reader sees it: plain ASCII, no overstriking."""
    r = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", "-rLL=200n", str(MAN)],
                       capture_output=True, text=True, check=True,
                       env=dict(os.environ, LC_ALL="C"))
    return r.stdout


def sections(text):
    """Top-level sections of the rendered page: name -> text."""
    out, name = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]+$", line):
            name = line.strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def commands():
    return re.findall(r"^  pwasm (\w+)", helptext("--help"), re.M)


def options(text):
    """-x and --long options named in a help text."""
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))


def test_the_page_has_its_sections():
    assert list(sections(render())) == SECTIONS


@pytest.mark.skipif(not shutil.which("groff"), reason="needs groff (groff-base)")
def test_groff_renders_it_without_warnings():
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["man", "--warnings", "-l", str(MAN)], capture_output=True, text=True,
                       env=dict(os.environ, MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_every_command_is_in_the_synopsis_and_has_its_section():
    s = sections(render())
    cmds = commands()
    assert set(cmds) >= {"inspect", "compile", "run", "test", "bench"}
    for cmd in cmds:
        assert re.search(rf"^\s+pwasm {cmd} ", s["SYNOPSIS"], re.M), cmd
        assert re.search(rf"^   pwasm {cmd} ", s["COMMANDS"], re.M), cmd


def command_text(cmd):
    """The command's synopsis and its part of COMMANDS."""
    s = sections(render())
    syn = re.search(rf"^\s+pwasm {cmd} .*?(?=^\s+pwasm |\Z)", s["SYNOPSIS"], re.M | re.S)
    part = re.search(rf"^   pwasm {cmd} .*?(?=^   pwasm |\Z)", s["COMMANDS"], re.M | re.S)
    return syn.group(0) + part.group(0)


@pytest.mark.parametrize("cmd", ["inspect", "compile", "run", "test", "bench"])
def test_every_option_of_the_help_is_in_the_page(cmd):
    assert cmd in commands()
    wanted = options(helptext(cmd, "--help")) - {"-h", "--help"}
    text = command_text(cmd)
    missing = sorted(o for o in wanted if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text))
    assert missing == [], f"pwasm {cmd}: {missing} not in docs/pwasm.1"


def test_the_tools_own_options_and_exit_statuses():
    top = helptext("--help")
    page = render()
    for o in options(top):
        assert o in page, o
    exits = dict(re.findall(r"^  (\d)  (\S.*)$", top, re.M))
    assert sorted(exits) == ["0", "1", "2", "3"]
    s = sections(page)
    assert re.findall(r"^       (\d)\s", s["EXIT STATUS"], re.M) == sorted(exits)


def test_every_environment_variable_pwasm_reads_is_documented():
    names = set()
    for src in list((ROOT / "src").rglob("*.c")) + list((ROOT / "cli").glob("*.c")):
        text = src.read_text()
        names |= set(re.findall(r'getenv\("(PWASM_\w+)"\)', text))
        names |= set(re.findall(r'env_or\([^)]*"(PWASM_\w+)"', text))
    assert {"PWASM_CACHE_DIR", "PWASM_CC", "PWASM_CFLAGS", "PWASM_WASM2C"} <= names
    env = sections(render())["ENVIRONMENT"]
    assert sorted(n for n in names if n not in env) == []
