#!/usr/bin/env bash
# Installs what building, running and testing pwasm need (Debian bookworm, as
# root). Does nothing when everything is already there.
set -euo pipefail
pkgs=(make gcc clang lld wasi-libc libclang-rt-14-dev-wasm32 libclang-rt-14-dev wabt
      nginx nginx-dev libnginx-mod-stream libssl-dev libyaml-dev
      python3 python3-pytest python3-prometheus-client curl valgrind
      libnghttp2-dev python3-grpcio python3-grpc-tools zlib1g-dev redis-server)
# make deb (debian/deb.mk) and its tests (tests/deb)
pkgs+=(debhelper dpkg-dev lintian pkgconf)
# gtlsclient: the HTTP/3 client of tests/nginx (on nginx >= 1.25 from NGINX_SOURCES)
pkgs+=(ngtcp2-client)
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
