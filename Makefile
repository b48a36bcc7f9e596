# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup livekit-server test-deps test test-unit check fmt bench bench-engine bench-bot bench-browser bench-devserver bench-api bench-search demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing the Python packages into $(VENV) (a few minutes the first time; log: $(VENV)/setup.log)"
	@: > $(VENV)/setup.log
	@# pip and setuptools talk on stderr even when all is well (build-backend notes): their output
	@# goes to the log, shown only when a step fails.
	@$(PIP) install -q --upgrade pip >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@$(PIP) install -q -c constraints.txt -e '.[dev]' >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@# silero-vad ships the ONNX VAD; --no-deps keeps torch out. Installed last: an install after
	@# it would report its (deliberately) missing torch as a dependency conflict.
	@$(PIP) install -q --no-deps silero-vad==6.2.3 >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@echo "setup: done"
	@touch $(STAMP)

# The official LiveKit server (pinned in lkserver/install.py), built once with `go install` into
# .cache/livekit-server/; says what to do when Go is missing.
livekit-server: setup
	$(PY) -m lkserver install

# What the end-to-end tests need beside Python: Redis (two official server nodes share one) and
# iproute2 (network namespaces), from Debian when missing; and tests/deploy's tools (Debian's
# prometheus, the Compose plugin and BuildKit's Dockerfile checks built with Go,
# kubernetes-validate and the Prometheus Operator's CRDs) under .cache/deploy-tools.
test-deps:
	@sh scripts/test-deps.sh

test: setup livekit-server test-deps
	$(PY) -m pytest tests

test-unit: setup
	$(PY) -m pytest tests/unit

check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# All benchmarks; the bot and dev server ones need root (they create a network namespace).
bench: bench-engine bench-api bench-search bench-devserver bench-bot bench-browser

bench-engine: setup
	$(PY) -m bench.engine

bench-api: setup
	$(PY) -m bench.api

bench-search: setup
	$(PY) -m bench.search

bench-devserver: setup
	$(PY) -m bench.devserver

bench-bot: setup livekit-server
	$(PY) -m bench.bot

# Chrome's default microphone processing against live accuracy (Chromium, the official server).
bench-browser: setup livekit-server test-deps
	$(PY) -m bench.browser

demo: setup
	$(PY) -m bot.demo

clean:
	rm -rf $(VENV) .data .cache .mypy_cache .ruff_cache .pytest_cache
