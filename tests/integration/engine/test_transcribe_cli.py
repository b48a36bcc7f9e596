"""``transcriber transcribe`` end to end on real files of every supported container."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import srt

from bot.evaluation import wer
from bot.pipeline.audio import read_file_audio

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
CLIP = REPO / "assets" / "eval" / "en_librispeech_1272-128104-0000.wav"
REFERENCE = CLIP.with_suffix(".txt").read_text(encoding="utf-8")

# container -> (codec, sample rate): other rates and two channels, to exercise resampling
CONTAINERS = {
    "flac": ("flac", 44_100),
    "mp3": ("libmp3lame", 44_100),
    "ogg": ("libopus", 48_000),
    "m4a": ("aac", 48_000),
    "webm": ("libopus", 48_000),
}


def encode(tmp: Path, ext: str) -> Path:
    codec, rate = CONTAINERS[ext]
    mono = read_file_audio(CLIP)
    # resample by linear interpolation, then make it stereo
    n = int(len(mono) * rate / 16_000)
    x = np.interp(np.linspace(0, len(mono) - 1, n), np.arange(len(mono)), mono).astype(np.float32)
    stereo = np.stack([x, x * 0.8])
    path = tmp / f"clip.{ext}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        fmt = stream.codec_context.codec.audio_formats[0].name
        frame_size = 960 if codec == "libopus" else 1024
        for i in range(0, n, frame_size):
            chunk = stereo[:, i : i + frame_size]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            frame.pts = i
            resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def run(*args: str, env_model: str = "tiny.en") -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "ASR_MODEL": env_model}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "transcribe", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_every_container_transcribes(tmp_path: Path, ext: str) -> None:
    path = encode(tmp_path, ext)
    result = run(str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"] == "tiny.en"
    text = " ".join(s["text"] for s in doc["segments"])
    assert wer(REFERENCE, text) <= 0.15


def test_srt_to_file_and_realtime_partials(tmp_path: Path) -> None:
    out = tmp_path / "out.srt"
    result = run(str(CLIP), "--format", "srt", "-o", str(out), "--realtime")
    assert result.returncode == 0, result.stderr
    subs = list(srt.parse(out.read_text(encoding="utf-8")))
    assert wer(REFERENCE, " ".join(s.content for s in subs)) <= 0.15
    assert result.stdout == ""
    live = result.stderr.splitlines()
    assert any("…" in line for line in live), "partials are shown live"
    assert subs[-1].content.strip() in live[-1]
