#!/usr/bin/env bash
# Installs what `make bench` needs beyond the build (Debian bookworm, as
# root): wrk, nginx's Lua and njs modules, valgrind (callgrind), gnuplot for
# the chart, taskset, iperf3 and nginx's stream module (the TCP part), and
# libc++ for wasm32-wasi (the C++ plugins of the compile part).
# Checks the very files bench/run.py uses; installs only the packages that
# provide missing ones.
set -euo pipefail
want=(
  /usr/bin/wrk:wrk
  /usr/lib/nginx/modules/ngx_http_lua_module.so:libnginx-mod-http-lua
  /usr/lib/nginx/modules/ndk_http_module.so:libnginx-mod-http-ndk
  /usr/lib/nginx/modules/ngx_http_js_module.so:libnginx-mod-http-js
  /usr/bin/valgrind:valgrind
  /usr/bin/callgrind_control:valgrind
  /usr/bin/gnuplot:gnuplot-nox
  /usr/bin/taskset:util-linux
  /usr/bin/iperf3:iperf3
  /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream
  /usr/lib/wasm32-wasi/libc++.a:libc++-14-dev-wasm32
  /usr/lib/wasm32-wasi/libc++abi.a:libc++abi-14-dev-wasm32
)
need=()
for w in "${want[@]}"; do
  [ -e "${w%%:*}" ] || need+=("${w#*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
need=($(printf '%s\n' "${need[@]}" | sort -u))
echo "bench: installing ${need[*]}"
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
