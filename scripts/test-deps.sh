#!/bin/sh
# What the end-to-end tests need beside Python, installed only where missing:
# - Debian: redis-server (two official LiveKit nodes share one), iproute2 (network namespaces),
#   chromium (the browser tests; never a downloaded browser);
# - npm: livekit-client and playwright-core for the browser tests, as pinned in
#   tests/e2e/browser/package-lock.json;
# - for tests/deploy (deploy/): Debian's prometheus (promtool, and the server the smoke test
#   runs), and under .cache/deploy-tools/ (or $DEPLOY_TOOLS_DIR): the Docker Compose CLI plugin built with Go from its
#   module (github.com/docker/compose/v2, for `docker compose config`; skipped when
#   `docker compose` already works), tests/deploy/dockerfile-check (BuildKit's Dockerfile
#   checks, built with Go), kubernetes-validate from PyPI in a venv of its own (the
#   Kubernetes JSON schemas, offline), and the Prometheus Operator's CRDs from its Go module.
set -eu
cd "$(dirname "$0")/.."
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
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

# --- tests/deploy ---------------------------------------------------------------------------------
tools=${DEPLOY_TOOLS_DIR:-.cache/deploy-tools}
COMPOSE_VERSION=v2.40.3
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
mkdir -p "$tools/bin"
GO=$(command -v go || echo /usr/local/go/bin/go)
if ! docker compose version >/dev/null 2>&1 && [ ! -x "$tools/bin/docker-compose" ]; then
  if [ -x "$GO" ]; then
    echo "test-deps: building docker compose $COMPOSE_VERSION with Go into $tools/bin (several minutes, once)"
    # go install pkg@version refuses this module (exclude directives): build it in its own folder
    src=$("$GO" mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    rm -rf "$tools/compose-src" && cp -r "$src" "$tools/compose-src" && chmod -R u+w "$tools/compose-src"
    (cd "$tools/compose-src" && GOFLAGS=-buildvcs=false "$GO" build -trimpath \
      -o "$PWD/../bin/docker-compose" ./cmd) && rm -rf "$tools/compose-src"
  else
    echo "test-deps: docker compose is missing and Go is not there to build it: tests/deploy will fail" >&2
  fi
fi
if [ ! -x "$tools/bin/dockerfile-check" ] \
    || [ tests/deploy/dockerfile-check/main.go -nt "$tools/bin/dockerfile-check" ]; then
  if [ -x "$GO" ]; then
    echo "test-deps: building tests/deploy/dockerfile-check (BuildKit's Dockerfile checks) with Go"
    out="$(cd "$tools" && pwd)/bin/dockerfile-check"
    (cd tests/deploy/dockerfile-check && GOFLAGS=-buildvcs=false "$GO" build -trimpath -o "$out" .)
  else
    echo "test-deps: Go is missing: the Dockerfile check of tests/deploy will fail" >&2
  fi
fi
if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  echo "test-deps: kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if [ ! -f "$tools/crds/monitoring.coreos.com_servicemonitors.yaml" ]; then
  if [ -x "$GO" ]; then
    echo "test-deps: Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs into $tools/crds"
    dir=$("$GO" mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$tools/crds"
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
       "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$tools/crds/"
  else
    echo "test-deps: Go is missing: the ServiceMonitor/PrometheusRule schemas are not installed" >&2
  fi
fi
