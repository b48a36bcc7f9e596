"""Reading audio files into 16 kHz mono float32 (PyAV: WAV, FLAC, MP3, OGG, M4A, WebM...)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.pipeline.vad import Float32Array
from core.errors import AudioInputError

CHUNK_SAMPLES = SAMPLE_RATE_HZ // 10  # 100 ms


def iter_file_audio(path: Path) -> Iterator[Float32Array]:
    """Yield the file's audio as 16 kHz mono float32 chunks, resampled and downmixed.

    Raises :class:`AudioInputError` for a missing, empty, corrupt or non-audio file.
    """
    import av

    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if not path.is_file():
        raise AudioInputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path}: file is empty")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioInputError(f"{path}: not a readable audio file ({_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            raise AudioInputError(f"{path}: contains no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
        produced = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    produced += len(chunk)
                    yield chunk
            for out in resampler.resample(None):
                chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                produced += len(chunk)
                yield chunk
        except av.error.FFmpegError as exc:
            raise AudioInputError(f"{path}: corrupt audio ({_reason(exc)})") from exc
        if produced == 0:
            raise AudioInputError(f"{path}: contains no audio samples")


def read_file_audio(path: Path) -> Float32Array:
    """The whole file as one 16 kHz mono float32 array."""
    return np.concatenate(list(iter_file_audio(path)))


def file_duration_s(path: Path) -> float | None:
    """Duration from the container header, when it has one (for progress bars)."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if container.duration:
                return float(container.duration) / 1_000_000
    except (av.error.FFmpegError, ValueError):
        return None
    return None


def _reason(exc: BaseException) -> str:
    """The cause in words: FFmpeg's own message, without its errno code or the file name."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(text))
    return text.splitlines()[0][:200]
