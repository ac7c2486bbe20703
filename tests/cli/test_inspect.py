"""pwasm inspect on real modules: what a plugin author sees."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
PWASM = pathlib.Path(os.environ.get("PWASM_BIN") or ROOT / "build" / "pwasm")


def inspect(path):
    return subprocess.run([str(PWASM), "inspect", str(ROOT / path)],
                          capture_output=True, text=True, timeout=30)


def test_c_example():
    r = inspect("build/examples/add_header.wasm")
    assert r.returncode == 0, r.stderr
    assert "abi:        0.2.1" in r.stdout
    assert "start:      _initialize (reactor)" in r.stdout
    assert "allocator:  proxy_on_memory_allocate" in r.stdout
    assert "env.proxy_log (i32, i32, i32) -> i32  [ok]" in r.stdout
    assert "func   proxy_on_response_headers (i32, i32, i32) -> i32" in r.stdout
    assert "host:       provides every import" in r.stdout


def test_assemblyscript_example():
    r = inspect("build/examples/as_add_header.wasm")
    assert r.returncode == 0, r.stderr
    assert "abi:        0.2.0" in r.stdout
    assert "start:      start section" in r.stdout
    assert "wasi_unstable.proc_exit (i32) -> ()  [ok]" in r.stdout


def test_unknown_import_is_flagged():
    r = inspect("build/tests/plugins/bad_import.wasm")
    assert r.returncode == 1
    assert "env.proxy_does_not_exist (i32) -> i32  [not provided]" in r.stdout
    assert "cannot run it" in r.stdout


def test_wrong_signature_is_flagged():
    r = inspect("build/tests/plugins/bad_signature.wasm")
    assert r.returncode == 1
    assert "env.proxy_log (i32, i32) -> i32  [wrong signature]" in r.stdout


def test_not_wasm(tmp_path):
    f = tmp_path / "x.wasm"
    f.write_bytes(b"hello")
    r = inspect(f)
    assert r.returncode == 3
    assert "not a Wasm module" in r.stderr


def test_not_a_proxy_wasm_module():
    r = inspect("build/tests/plugins/not_proxy_wasm.wasm")
    assert r.returncode == 1, r.stdout
    assert "abi:        none (not a Proxy-Wasm module)" in r.stdout
    assert "sdk:        none" in r.stdout
    assert ("host:       cannot run it as a Proxy-Wasm plugin: no Proxy-Wasm ABI "
            "version marker") in r.stdout
    assert "provides every import" not in r.stdout


def test_truncated_artifact(tmp_path):
    f = tmp_path / "x.pwasm"
    f.write_bytes(b"PWASMAOT\x01\x00\x00\x00")
    r = inspect(f)
    assert r.returncode == 3
    assert "truncated pwasm compile artifact" in r.stderr


def test_header_callbacks_of_the_other_abi_version_are_accepted():
    for name, abi, sig in (("mixed_abi010", "0.1.0", "(i32, i32, i32) -> i32"),
                           ("mixed_abi020", "0.2.0", "(i32, i32) -> i32")):
        r = inspect(f"build/tests/plugins/{name}.wasm")
        assert r.returncode == 0, r.stdout
        assert f"abi:        {abi}" in r.stdout
        assert f"func   proxy_on_request_headers {sig}" in r.stdout
        assert "host:       provides every import" in r.stdout
    r = inspect("build/tests/plugins/bad_headers.wasm")
    assert r.returncode == 1
    assert ("cannot run it as a Proxy-Wasm plugin: exports proxy_on_request_headers "
            "with signature (i32) -> i32, expected (i32, i32, i32) -> i32 or "
            "(i32, i32) -> i32") in r.stdout
