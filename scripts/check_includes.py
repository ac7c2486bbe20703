#!/usr/bin/env python3
"""Checks that dependencies point one way (docs/ARCHITECTURE.md):

  engine  <- core <- (nginx, cli)        include/ is the only public face

- src/engine/ includes nothing of src/core/ and not pwasm.h;
- src/core/ includes no nginx header and nothing of cli/;
- nginx/ and cli/ include only include/ (pwasm.h, proxy_wasm/abi.h) of the
  library, never src/engine/ or src/core/ headers; nginx/common/ includes
  no ngx_http_* header (the stream module compiles it too), except the
  callout client's two files (HTTP_IN_COMMON): a callout is an HTTP
  request to an http{} upstream block, whichever subsystem's plugin makes
  it, and nginx always has its http core, whose parsers and upstream
  blocks they use;
- project headers include each other without a loop, and no .c file
  includes another .c file.

Prints each violation as FILE:LINE: why; exits 1 if there is any."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The files of nginx/common/ that may include ngx_http.h (see above).
HTTP_IN_COMMON = {"nginx/common/ngx_proxy_wasm_callout.c", "nginx/common/ngx_proxy_wasm_target.c"}
INC = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def files(top, exts=(".c", ".h", ".def")):
    for d, _, names in os.walk(os.path.join(ROOT, top)):
        for n in sorted(names):
            if n.endswith(exts):
                yield os.path.relpath(os.path.join(d, n), ROOT)


def includes(path):
    with open(os.path.join(ROOT, path), errors="replace") as f:
        for no, line in enumerate(f, 1):
            m = INC.match(line)
            if m:
                yield no, m.group(1)


def resolve(path, inc):
    """The project file an include names, or None (system header)."""
    for base in (os.path.dirname(path), "src", "include"):
        cand = os.path.normpath(os.path.join(base, inc))
        if os.path.exists(os.path.join(ROOT, cand)):
            return cand
    return None


def main():
    bad = []
    graph = {}
    for top in ("src", "nginx", "cli", "include"):
        for path in files(top):
            for no, inc in includes(path):
                target = resolve(path, inc)
                where = f"{path}:{no}"
                if target:
                    graph.setdefault(path, set()).add(target)
                    if path.endswith((".c", ".h")) and target.endswith(".c"):
                        bad.append(f"{where}: includes a .c file ({inc})")
                if path.startswith("src/engine/"):
                    if (target or "").startswith("src/core/") or inc == "pwasm.h":
                        bad.append(f"{where}: the engine includes the core ({inc})")
                if path.startswith("src/core/"):
                    if inc.startswith("ngx_") or "nginx" in inc or (target or "").startswith("cli/"):
                        bad.append(f"{where}: the core includes {inc}")
                if (path.startswith("nginx/common/") and inc.startswith("ngx_http")
                        and path not in HTTP_IN_COMMON):
                    bad.append(f"{where}: nginx/common/ is shared with the stream module and "
                               f"includes an HTTP header ({inc})")
                if path.startswith(("nginx/", "cli/")):
                    if (target or "").startswith("src/"):
                        bad.append(f"{where}: {path.split('/')[0]}/ includes a library "
                                   f"internal ({inc}); use include/ only")
    # loops among project files
    state = {}

    def visit(n, stack):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                loop = stack[stack.index(m):] + [m] if m in stack else [n, m]
                bad.append("include loop: " + " -> ".join(loop))
            elif not state.get(m):
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if not state.get(n):
            visit(n, [n])
    for b in bad:
        print(b)
    print(f"include rules: {len(bad)} violation(s) in {len(graph)} files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
