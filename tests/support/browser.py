"""Stock browser clients for tests and benchmarks: ``tests/e2e/browser/driver.mjs`` runs
``livekit-client`` pages in Debian's Chromium (playwright-core with ``executablePath``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.pipeline.audio import read_file_audio
from bot.simulate import to_pcm48k

BROWSER_DIR = Path(__file__).resolve().parents[1] / "e2e" / "browser"
LEAD_S, TAIL_S = 1.5, 3.0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is missing: run `make test-deps` (Debian: chromium)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            "browser test packages missing: run `make test-deps` (npm ci in tests/e2e/browser)"
        )
    return found


def microphone_wav(clip: Path, folder: Path) -> tuple[Path, float]:
    """The clip with silence around it, 48 kHz mono int16: what the fake microphone plays."""
    pcm = to_pcm48k(read_file_audio(clip))
    silence = np.zeros(int(48_000 * LEAD_S), dtype=np.int16)
    tail = np.zeros(int(48_000 * TAIL_S), dtype=np.int16)
    audio = np.concatenate([silence, pcm, tail])
    path = folder / f"mic-{clip.stem}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(audio.tobytes())
    return path, len(audio) / 48_000


async def run_browsers(plan: dict[str, Any], timeout_s: float = 180.0) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(BROWSER_DIR / "driver.mjs"),
        json.dumps({"chromium": chromium(), **plan}),
        cwd=BROWSER_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(out)
    return report


def problems(client: dict[str, Any], expected: tuple[str, ...] = ()) -> list[str]:
    """Reconnects, negotiation errors and page errors a client saw: a healthy run has none.
    Console lines containing one of ``expected`` are left out."""
    bad = [
        f"{e['kind']}: {e.get('arg') or e.get('message', '')}"
        for e in client["events"]
        if e["kind"] in ("Reconnecting", "SignalReconnecting", "Disconnected", "connect_error",
                         "publish_error", "MediaDevicesError")
    ]  # fmt: skip
    for line in client["console"]:
        text = line["text"]
        if any(e in text for e in expected):
            continue
        negotiation = "negotiation" in text.lower() and "fail" in text.lower()
        if line["type"] in ("error", "pageerror") or "NegotiationError" in text or negotiation:
            bad.append(f"console {line['type']}: {text[:200]}")
    return bad
