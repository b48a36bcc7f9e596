"""WhisperLive 0.10.0's TranscriptionServer on one port, faster_whisper backend, a local model.

Run by ``bench.peers`` with the WhisperLive venv's Python:
``python whisper_live_server.py PORT MODEL_DIR``. Everything else is the server's default (one
model per connection, VAD on, no batching); the client sends the options of WhisperLive's own
client. Its faster_whisper backend runs faster-whisper's Silero VAD, which ships in the
faster-whisper wheel; the wget download in ``whisper_live.vad`` is only used by the TensorRT
backend, so nothing here reaches the network.
"""

import logging
import sys

from whisper_live.server import TranscriptionServer


def main() -> None:
    port, model_dir = int(sys.argv[1]), sys.argv[2]
    logging.basicConfig(level=logging.WARNING)
    TranscriptionServer().run(
        "127.0.0.1",
        port=port,
        backend="faster_whisper",
        faster_whisper_custom_model_path=model_dir,
    )


if __name__ == "__main__":
    main()
