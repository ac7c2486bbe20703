#!/usr/bin/env bash
# nginx/build_against.sh -- `make NGINX_SRC=/path/to/nginx-x.y.z`: builds
# ngx_http_proxy_wasm_module.so (and ngx_stream_proxy_wasm_module.so when
# the target nginx has the stream subsystem) against an nginx source tree,
# for an nginx binary other than Debian's (nginx.org's packages, a
# self-built nginx). Called by nginx/nginx.mk with, in the environment:
#
#   NGINX_SRC        the source tree: a release tarball unpacked (./configure)
#                    or a checkout of nginx's repository (auto/configure);
#                    it is copied, never written to
#   NGINX_BIN        the nginx binary the modules are for: its `nginx -V`
#                    gives the configure arguments, its `nginx -v` must be
#                    the source's version (nginx refuses a module of another
#                    version)
#   NGINX_CONFIGURE  instead of NGINX_BIN's: the configure arguments, as
#                    `nginx -V` prints them after "configure arguments:"
#   NGINX_TREE       the build tree (a copy of NGINX_SRC, configured)
#   NGINX_MODULE_DIR where the .so files go
#   PWASM_LIB        the absolute path of libpwasm.a
#
# The arguments are the target's own, less the modules that are not nginx's
# (--add-module, --add-dynamic-module) and nginx's optional dynamic modules
# (--with-X=dynamic, but the stream subsystem: their -dev packages would be
# needed only to configure them), plus --add-dynamic-module=<this dir>. A
# binary built --with-compat (nginx.org's packages, Debian's) loads modules
# built so; a binary without it only loads modules configured exactly as it
# was, which this does too.
#
# configure runs again only when the source, the arguments or nginx/config
# change (NGINX_TREE/pwasm.stamp); the modules are relinked every time.
set -euo pipefail

die() { echo "nginx-module: $*" >&2; exit 1; }

addon=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${NGINX_SRC:?}" 2>/dev/null && pwd) || die "NGINX_SRC=$NGINX_SRC: no such directory"
tree=${NGINX_TREE:?}
out=${NGINX_MODULE_DIR:?}
: "${PWASM_LIB:?}"

[ -f "$src/src/core/nginx.h" ] || die "$src is not an nginx source tree (no src/core/nginx.h)"
src_version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$src/src/core/nginx.h")
if [ -x "$src/configure" ]; then configure=./configure
elif [ -x "$src/auto/configure" ]; then configure=auto/configure
else die "$src has neither ./configure nor auto/configure"
fi

if [ -n "${NGINX_CONFIGURE:-}" ]; then
    args=$NGINX_CONFIGURE
    target="the given NGINX_CONFIGURE"
else
    bin=${NGINX_BIN:-/usr/sbin/nginx}
    [ -x "$bin" ] || die "NGINX_BIN=$bin is not an executable (give the nginx the modules are for, or NGINX_CONFIGURE)"
    info=$("$bin" -V 2>&1) || die "$bin -V failed: $info"
    bin_version=$(printf '%s\n' "$info" | sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p')
    [ "$bin_version" = "$src_version" ] || \
        die "$bin is nginx $bin_version, $src is $src_version: nginx loads only modules built from its own version's source"
    args=$(printf '%s\n' "$info" | sed -n 's/^configure arguments: //p')
    target=$bin
fi

# the arguments, unquoted as the shell that ran configure did
eval "set -- $args"
keep=()
compat=0
for a in "$@"; do
    case $a in
        --add-module=*|--add-dynamic-module=*) ;;
        --with-stream=dynamic) keep+=("$a") ;;
        --with-*=dynamic) ;;
        --with-compat) compat=1; keep+=("$a") ;;
        *) keep+=("$a") ;;
    esac
done
[ $compat = 1 ] || echo "nginx-module: warning: $target was configured without --with-compat: it loads only modules configured exactly as it was" >&2
keep+=("--add-dynamic-module=$addon")

key="$src $src_version $(sha256sum "$addon/config" | cut -d' ' -f1) ${keep[*]}"
if [ ! -f "$tree/pwasm.stamp" ] || [ "$(cat "$tree/pwasm.stamp")" != "$key" ] \
   || [ ! -f "$tree/objs/Makefile" ]; then
    echo "nginx-module: configuring nginx $src_version ($src) with the arguments of $target"
    rm -rf "$tree"
    mkdir -p "$(dirname "$tree")"
    cp -a "$src" "$tree"
    rm -rf "$tree/objs" "$tree/Makefile"
    (cd "$tree" && PWASM_LIB=$PWASM_LIB $configure "${keep[@]}") > "$tree.configure.log" 2>&1 || {
        tail -n 30 "$tree.configure.log" >&2
        die "configure failed (log: $tree.configure.log)"
    }
    echo "$key" > "$tree/pwasm.stamp"
fi

mods=(ngx_http_proxy_wasm_module)
grep -q '^objs/ngx_stream_proxy_wasm_module.so:' "$tree/objs/Makefile" && mods+=(ngx_stream_proxy_wasm_module)
targets=()
for m in "${mods[@]}"; do
    rm -f "$tree/objs/$m.so"
    targets+=("objs/$m.so")
done
# MAKEFLAGS cleared: our command-line variables stay out of nginx's make
MAKEFLAGS='' MFLAGS='' make -C "$tree" -f objs/Makefile "${targets[@]}"
mkdir -p "$out"
for m in "${mods[@]}"; do
    # never written in place: a running nginx has the old file mapped
    cp "$tree/objs/$m.so" "$out/$m.so.tmp" && mv -f "$out/$m.so.tmp" "$out/$m.so"
    echo "nginx-module: $out/$m.so (nginx $src_version)"
done
[ ${#mods[@]} = 2 ] || echo "nginx-module: $target has no stream subsystem: no ngx_stream_proxy_wasm_module.so" >&2
