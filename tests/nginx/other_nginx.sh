#!/usr/bin/env bash
# tests/nginx/other_nginx.sh DIR [pytest args...] -- the nginx test suite on
# each nginx of DIR/nginx-*.tar.gz (`make test-nginx-sources`, which
# `make check` runs when NGINX_SOURCES is set; .ci/run sets it):
#
#   1. build nginx from the tarball under build/nginx-<version>/
#      (tests/nginx/build_nginx.sh; cached, keyed by the tarball)
#   2. build our modules against it the way a user does:
#      make NGINX_SRC=<its source> NGINX_BIN=<its binary>
#      into build/nginx-<version>/modules/
#   3. run tests/nginx with that binary, its ngx_stream_module.so and those
#      modules (PWASM_NGINX, PWASM_NGINX_STREAM, PWASM_MODULE_DIR)
#
# Each step's time is printed ("other_nginx: ... s") and summed up at the
# end. Fails when any version's build or suite fails, after running all.
set -uo pipefail
dir=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
build=$(cd "$build" && pwd)
python=${NGINX_PYTHON:-/usr/bin/python3}
make=${MAKE:-make}

shopt -s nullglob
tarballs=("$dir"/nginx-*.tar.gz)
if [ ${#tarballs[@]} = 0 ]; then
    echo "other_nginx: no nginx-*.tar.gz in $dir" >&2
    exit 1
fi

failed=()
summary=()
for t in "${tarballs[@]}"; do
    v=$(basename "$t" .tar.gz)
    out=$build/$v
    t0=$(date +%s)
    if ! nice bash "$root/tests/nginx/build_nginx.sh" "$t" "$out"; then
        failed+=("$v (nginx build)"); continue
    fi
    t1=$(date +%s)
    if ! nice "$make" -C "$root" --no-print-directory BUILD="$build" \
            NGINX_SRC="$out/src" NGINX_BIN="$out/src/objs/nginx" \
            NGINX_MODULE_DIR="$out/modules" nginx-module; then
        failed+=("$v (modules)"); continue
    fi
    t2=$(date +%s)
    echo "other_nginx: tests/nginx on $v"
    PWASM_BUILD=$build PWASM_NGINX=$out/src/objs/nginx \
      PWASM_NGINX_STREAM=$out/src/objs/ngx_stream_module.so \
      PWASM_MODULE_DIR=$out/modules \
      $python -m pytest -q -p no:cacheprovider "$@" "$root/tests/nginx" || failed+=("$v (tests)")
    t3=$(date +%s)
    summary+=("$v: nginx build $((t1 - t0)) s, modules $((t2 - t1)) s, tests $((t3 - t2)) s")
done
for s in "${summary[@]}"; do echo "other_nginx: $s"; done
if [ ${#failed[@]} -gt 0 ]; then
    echo "other_nginx: failed: ${failed[*]}" >&2
    exit 1
fi
