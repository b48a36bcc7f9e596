#!/bin/sh
# Installs the two peer systems of `make bench-peers` (bench/peers.py), each in its own venv under
# .cache/peers/<name>, never into .venv. Idempotent: a stamp file per venv, written last.
#
# Torch: both peers import it (WhisperLive's VAD and backend, WhisperLiveKit's Silero wrapper) but
# use it only for small tensor ops. Instead of downloading PyPI's ~2.7 GB CUDA build a third time,
# .cache/peers/torch-site holds symlinks to the torch of the project's .venv (make
# setup-diarization installs it) and to its runtime dependencies, and a .pth file in each peer
# venv puts that folder on sys.path. pip then sees torch as installed.
#
# The peers are installed with --no-deps plus the dependencies their faster-whisper path imports:
# WhisperLive 0.10.0 declares openvino, optimum, openai-whisper, PyAudio and CUDA wheels (several
# GB) that its faster_whisper backend never imports.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS_DIR:-$ROOT/.cache/peers}
SHARED_SITE=${SHARED_SITE:-$ROOT/.venv/lib/python3.11/site-packages}
PYTHON=${PEER_PYTHON:-python3.11}
mkdir -p "$PEERS"

torch_site() {
	site="$PEERS/torch-site"
	[ -f "$site/.stamp" ] && return 0
	[ -d "$SHARED_SITE/torch" ] || {
		echo "bench-peers: $SHARED_SITE has no torch: run 'make setup-diarization' first" >&2
		exit 1
	}
	rm -rf "$site" && mkdir -p "$site"
	for pattern in torch torch-*.dist-info torchgen functorch nvidia nvidia_*.dist-info \
		cuda cuda_*.dist-info triton triton-*.dist-info sympy sympy-*.dist-info mpmath \
		mpmath-*.dist-info networkx networkx-*.dist-info jinja2 jinja2-*.dist-info markupsafe \
		markupsafe-*.dist-info filelock filelock-*.dist-info fsspec fsspec-*.dist-info \
		typing_extensions.py typing_extensions-*.dist-info; do
		for path in "$SHARED_SITE"/$pattern; do
			[ -e "$path" ] && ln -s "$path" "$site/$(basename "$path")"
		done
	done
	touch "$site/.stamp"
}

venv() {  # venv NAME: an empty venv whose sys.path ends with torch-site
	dir="$PEERS/$1"
	[ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
	echo "$PEERS/torch-site" >"$dir/lib/python3.11/site-packages/zz_shared_torch.pth"
	"$dir/bin/pip" install -q --upgrade pip >>"$dir/setup.log" 2>&1
}

install() {  # install NAME PIP-ARGS...: pip into the peer venv, log shown on failure
	dir="$PEERS/$1"
	shift
	"$dir/bin/pip" install -q "$@" >>"$dir/setup.log" 2>&1 || { cat "$dir/setup.log"; exit 1; }
}

torch_site
start=$(date +%s)

if [ ! -f "$PEERS/whisper-live/.stamp" ]; then
	echo "bench-peers: installing WhisperLive 0.10.0 into $PEERS/whisper-live (log: setup.log there)"
	venv whisper-live
	install whisper-live --no-deps whisper-live==0.10.0
	install whisper-live faster-whisper==1.2.0 "numpy<2.5" websockets websocket-client scipy av \
		fastapi uvicorn python-multipart soundfile tokenizers==0.20.3
	touch "$PEERS/whisper-live/.stamp"
fi

if [ ! -f "$PEERS/whisperlivekit/.stamp" ]; then
	echo "bench-peers: installing WhisperLiveKit 0.2.26 into $PEERS/whisperlivekit (log: setup.log there)"
	venv whisperlivekit
	install whisperlivekit --no-deps whisperlivekit==0.2.26
	install whisperlivekit "faster-whisper>=1.2.0" "fastapi>=0.141.1" "starlette>=1.3.1" uvicorn \
		websockets soundfile librosa huggingface-hub tqdm tiktoken "python-multipart>=0.0.31"
	touch "$PEERS/whisperlivekit/.stamp"
fi

end=$(date +%s)
[ "$end" -gt "$start" ] && echo "bench-peers: peer install took $((end - start)) s; sizes:" &&
	du -sh "$PEERS/whisper-live" "$PEERS/whisperlivekit"
exit 0
