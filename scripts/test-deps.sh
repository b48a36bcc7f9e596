#!/bin/sh
# What the end-to-end tests need beside Python, installed only where missing:
# - Debian: redis-server (two official LiveKit nodes share one), iproute2 (network namespaces),
#   chromium (the browser tests; never a downloaded browser);
# - npm: livekit-client and playwright-core for the browser tests, as pinned in
#   tests/e2e/browser/package-lock.json.
set -eu
cd "$(dirname "$0")/.."
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: missing$missing; install them (Debian: apt-get install$missing)" >&2
    echo "test-deps: the end-to-end tests that need them will fail" >&2
  else
    echo "test-deps: installing$missing from Debian (chromium is large: a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086 - word splitting intended
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi
browser=tests/e2e/browser
if [ ! -f "$browser/node_modules/.package-lock.json" ] \
    || [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "test-deps: npm ci in $browser (livekit-client, playwright-core)"
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "test-deps: npm is missing: the browser tests will fail (install Node.js and npm)" >&2
  fi
fi
