#!/bin/sh
# Debian packages the end-to-end tests need: redis-server, iproute2. Installs only what is missing,
# and only as root (the e2e tests need root for network namespaces anyway).
set -eu
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: missing$missing; install them (Debian: apt-get install$missing)" >&2
  echo "test-deps: the end-to-end tests that need them will fail" >&2
  exit 0
fi
echo "test-deps: installing$missing from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086 - word splitting intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
