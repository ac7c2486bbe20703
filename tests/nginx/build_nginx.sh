#!/usr/bin/env bash
# tests/nginx/build_nginx.sh TARBALL OUTDIR
#
# Builds nginx from a source tarball (a release tarball with ./configure or
# a snapshot of nginx's repository with auto/configure) into OUTDIR, for
# running the nginx test suite on an nginx other than Debian's:
#
#   OUTDIR/src           the unpacked, configured and built tree
#   OUTDIR/src/objs/nginx            the binary
#   OUTDIR/src/objs/ngx_stream_module.so  the stream subsystem (dynamic,
#                                    loaded before our stream module, as
#                                    Debian's nginx has it)
#   OUTDIR/prefix        its prefix (compiled-in paths point here, not at
#                        /etc/nginx or /var/lib/nginx)
#
# Configured with the static modules of Debian's nginx (its `nginx -V` less
# the dynamic modules that need other -dev packages and its paths) plus
# HTTP/3 (--with-http_v3_module, nginx >= 1.25) and --with-compat, so that
# our modules build against it with `make NGINX_SRC=` as against any nginx.
#
# Cached: nothing is done when OUTDIR/stamp names the same tarball (path and
# sha256) and the same flags. Building takes a few minutes of both cores;
# run it with nice.
set -euo pipefail
tarball=$(readlink -f "$1")
out=$2
mkdir -p "$out"
out=$(readlink -f "$out")

flags=(--prefix="$out/prefix"
       --with-cc-opt='-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC'
       --with-ld-opt='-Wl,-z,relro -Wl,-z,now -fPIC'
       --with-compat --with-debug --with-pcre-jit --with-threads
       --with-http_ssl_module --with-http_stub_status_module
       --with-http_realip_module --with-http_auth_request_module
       --with-http_v2_module --with-http_dav_module --with-http_slice_module
       --with-http_addition_module --with-http_flv_module
       --with-http_gunzip_module --with-http_gzip_static_module
       --with-http_mp4_module --with-http_random_index_module
       --with-http_secure_link_module --with-http_sub_module
       --with-stream=dynamic --with-stream_ssl_module
       --with-stream_ssl_preread_module --with-stream_realip_module)

version=$(basename "$tarball" .tar.gz)
version=${version#nginx-}
# HTTP/3 came with 1.25.0
if [ "$(printf '%s\n' 1.25.0 "$version" | sort -V | head -n1)" = 1.25.0 ]; then
    flags+=(--with-http_v3_module)
fi

key="$tarball $(sha256sum "$tarball" | cut -d' ' -f1) ${flags[*]}"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$key" ] \
   && [ -x "$out/src/objs/nginx" ]; then
    echo "build_nginx: $out/src/objs/nginx is up to date ($version)"
    exit 0
fi

start=$(date +%s)
rm -rf "$out/src" "$out/prefix" "$out/stamp"
mkdir -p "$out/src" "$out/prefix/logs" "$out/prefix/conf"
tar -xzf "$tarball" -C "$out/src" --strip-components=1
cd "$out/src"
if [ -x ./configure ]; then configure=./configure; else configure=auto/configure; fi
echo "build_nginx: configuring nginx $version in $out/src (log: configure.log)"
$configure "${flags[@]}" > configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }
echo "build_nginx: building nginx $version (log: build.log)"
make -j"$(nproc)" > build.log 2>&1 || { tail -n 40 build.log >&2; exit 1; }
# mime.types and the like, for a configuration that includes them
cp conf/* "$out/prefix/conf/"
echo "$key" > "$out/stamp"
echo "build_nginx: nginx $version built in $(( $(date +%s) - start )) s"
