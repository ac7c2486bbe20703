#!/usr/bin/env bash
# demo/run.sh BUILD_DIR -- starts the pwasm demo in the foreground (`make run`).
#
# Writes BUILD_DIR/demo/nginx.conf from demo/nginx.conf.in and runs Debian's
# nginx with it: 127.0.0.1:$PORT (default 8080) with the example plugins, an
# upstream on 127.0.0.1:$((PORT+1)), a Redis (Debian's redis-server, no
# persistence) on 127.0.0.1:$((PORT+2)) and the TCP plugin redis_guard in
# front of it on 127.0.0.1:$((PORT+3)). Ctrl-C stops nginx and Redis. As
# root, workers run as the invoking user ($SUDO_USER) or nobody.
set -euo pipefail

build=$(cd "${1:?usage: demo/run.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
nginx=${NGINX:-/usr/sbin/nginx}
port=${PORT:-8080}
upstream_port=$((port + 1))
redis_port=$((port + 2))
guard_port=$((port + 3))
demo=$build/demo
module=$build/ngx_http_proxy_wasm_module.so
stream_module=$build/ngx_stream_proxy_wasm_module.so
examples=$build/examples

for f in "$module" "$stream_module" "$examples/add_header.wasm" "$examples/deny.wasm" \
         "$examples/as_add_header.wasm" "$examples/shared_counter.wasm" \
         "$examples/auth_callout.wasm" "$examples/redis_guard.wasm"; do
  [ -f "$f" ] || { echo "demo: $f is missing; run: make nginx-module examples-c examples-as" >&2; exit 1; }
done
[ -x "$nginx" ] || { echo "demo: $nginx not found; run: make deps" >&2; exit 1; }

command -v redis-server >/dev/null || { echo "demo: redis-server not found; run: make deps" >&2; exit 1; }

for p in "$port" "$upstream_port" "$redis_port" "$guard_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: 127.0.0.1:$p is already in use (set PORT=... to use other ports)" >&2
    exit 1
  fi
done

user_line=
if [ "$(id -u)" = 0 ]; then
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    user_line="user $SUDO_USER $(id -gn "$SUDO_USER");"
  else
    user_line="user nobody nogroup;"
  fi
fi

mkdir -p "$demo/tmp"
sed -e "s|@DEMO@|$demo|g" -e "s|@MODULE@|$module|g" -e "s|@EXAMPLES@|$examples|g" \
    -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$upstream_port|g" -e "s|@USER@|$user_line|g" \
    -e "s|@STREAM_MODULE@|$stream_module|g" -e "s|@REDIS_PORT@|$redis_port|g" \
    -e "s|@REDIS_GUARD_PORT@|$guard_port|g" \
    "$here/nginx.conf.in" > "$demo/nginx.conf"

export PWASM_CACHE_DIR=${PWASM_CACHE_DIR:-$build/cache}

url=http://127.0.0.1:$port
cat <<MSG

pwasm demo: nginx on $url (2 workers) with Proxy-Wasm plugins
(configuration: $demo/nginx.conf; plugin logs appear below, prefixed [pwasm]).
Try, from another terminal:

  curl -i $url/
      200 from the upstream (it echoes the request it got); the C plugin
      add_header adds the response header "x-hello: from-pwasm".

  curl -i $url/admin
      403 "forbidden" from the C plugin deny: no x-api-key header, so the
      upstream is never reached.

  curl -i -H 'x-api-key: secret' $url/admin
      200: the request passes deny; the upstream shows "x-api-key: secret".

  curl -i $url/as/
      200 through the AssemblyScript plugin: response header
      "x-as-plugin: hello", and the upstream shows "x-as-request: 1", a
      request header the plugin added.

  for i in 1 2 3 4 5; do curl -s -o /dev/null -D - $url/count | grep x-count; done
      x-count: 1, 2, 3, ...: a counter in shared memory that the two
      workers increment with compare-and-swap (examples/c/shared_counter).

  curl -i $url/private
      401 "unauthorized": the C plugin auth_callout asked the auth service
      (an HTTP callout to the upstream block auth_service) while the
      request waited, and the service said no.

  curl -i -H 'Authorization: Bearer demo' $url/private
      200: the service said yes; the upstream shows "x-auth-user: alice",
      the header the plugin added from the service's answer.

  curl -s $url/metrics
      Prometheus text: the plugins' metrics (shared_counter_requests_total)
      and pwasm's own (pwasm_streams_total{plugin=...}, shared data).

  redis-cli -p $guard_port set greeting hello
  redis-cli -p $guard_port get greeting
      OK, then "hello": Redis (127.0.0.1:$redis_port) through nginx's stream
      proxy and the TCP plugin redis_guard, which reads every command.

  redis-cli -p $guard_port flushall
      (error) ERR command 'flushall' is not allowed by redis_guard: the
      plugin refused it; the data is still there, and the same connection
      keeps working (try both in one session: redis-cli -p $guard_port).

Ctrl-C stops nginx and Redis.

MSG

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$demo/tmp" --loglevel warning &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
"$nginx" -p "$demo" -c "$demo/nginx.conf" -e stderr
