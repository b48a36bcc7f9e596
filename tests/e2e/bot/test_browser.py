"""Stock browser clients: ``livekit-client`` in Debian's Chromium, on both LiveKit servers.

A speaker page publishes a real recording as its microphone (Chromium's fake capture from a WAV)
with ``setMicrophoneEnabled``; a listener page reads captions the way meeting clients do
(``registerTextStreamHandler('lk.transcription')`` and ``RoomEvent.TranscriptionReceived``). The
pages are driven by ``tests/e2e/browser/driver.mjs`` (playwright-core with ``executablePath``;
no browser is downloaded). Both signalling paths run: ``/rtc/v1`` (one peer connection, the
client's default) and ``/rtc`` (two peer connections, ``singlePeerConnection: false``), plus the
client's own fallback from ``/rtc/v1`` to ``/rtc`` on a dev server that refuses ``/rtc/v1``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.evaluation import wer
from lkserver import LiveKitServer
from store.enums import JobStatus
from store.stores import Store
from tests.e2e.bot.conftest import worker_env_for
from tests.e2e.bot.helpers import EVAL, WorkerProcess
from tests.e2e.bot.test_bot import new_session, reference, stored_finals, wait_job
from tests.e2e.devserver.helpers import token
from tests.support.browser import microphone_wav, problems, run_browsers
from tests.support.livekit import start_devserver
from tests.support.netns import VethNamespace

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JFK = EVAL / "en_jfk_inaugural.wav"
QUILTER = EVAL / "en_librispeech_1272-128104-0000.wav"


async def caption_a_browser_speaker(
    url: str,
    repo: Store,
    worker_env: dict[str, str],
    tmp_path: Path,
    *,
    clip: Path,
    room_options: dict[str, Any],
    audio_processing: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str, str | None]]]:
    session = await new_session(repo)
    worker = WorkerProcess("w1", {**worker_env, "LIVEKIT_URL": url}, tmp_path)
    try:
        await worker.wait_ready()
        # The worker holds the job before the browsers come (it waits for the first participant);
        # after the meeting the server may already have closed the room and the job with it.
        await wait_job(repo, session.id, lambda j: j.status == JobStatus.RUNNING)
        wav, seconds = microphone_wav(clip, tmp_path)
        report = await _run_meeting(url, session.slug, wav, seconds, room_options, audio_processing)
    finally:
        worker.stop()
    (speaker,) = report["speakers"]
    (listener,) = report["listeners"]
    published = {c["segmentId"] for c in listener["captions"] if c["final"] and c["text"]}
    for _ in range(40):  # the stored copy may trail the published one by a moment
        stored = await stored_finals(repo, session.id)
        if {s[0] for s in stored} >= published:
            break
        await asyncio.sleep(0.25)
    return speaker, listener, stored


async def _run_meeting(
    url: str,
    room: str,
    wav: Path,
    seconds: float,
    room_options: dict[str, Any],
    audio_processing: bool,
) -> dict[str, Any]:
    return await run_browsers(
        {
            "url": url,
            "seconds": seconds + 8.0,
            "roomOptions": room_options,
            "listeners": [{"identity": "carol", "token": token("carol", room)}],
            "speakers": [
                {
                    "identity": "alice",
                    "token": token("alice", room, name="Alice"),
                    "wav": str(wav),
                    "audioProcessing": audio_processing,
                }
            ],
        }
    )


def assert_captioned(
    speaker: dict[str, Any],
    listener: dict[str, Any],
    stored: list[tuple[str, str, str | None]],
    clip: Path,
    expected: tuple[str, ...] = (),
) -> None:
    assert problems(speaker, expected) == [], problems(speaker, expected)
    assert problems(listener, expected) == [], problems(listener, expected)
    (published,) = [e for e in speaker["events"] if e["kind"] == "published"]
    assert speaker["trackSid"], "the publish settled with a track sid"
    captions = [c for c in listener["captions"] if c["text"]]
    assert captions, "the listener saw captions"
    # attribution: the speaker's identity and microphone track
    assert {c["sender"] for c in captions} == {"alice"}
    assert {c["trackId"] for c in captions} == {speaker["trackSid"]}
    # one segment id per utterance: partials first, then exactly one final, under one id
    by_segment: dict[str, list[bool]] = {}
    for c in captions:
        by_segment.setdefault(c["segmentId"], []).append(c["final"])
    for flags in by_segment.values():
        assert flags[-1] is True and flags.count(True) == 1, flags
    assert any(len(flags) > 1 for flags in by_segment.values()), "partials came before finals"
    # the legacy Transcription packets reach the browser too
    assert {seg["sender"] for seg in listener["legacy"]} == {"alice"}
    text = " ".join(c["text"] for c in captions if c["final"])
    # tiny.en through Opus in a browser: the same guard as the SDK speakers' (accuracy itself is
    # measured on base in bench/engine.py)
    assert wer(reference(clip.stem), text) <= 0.4, text
    assert {s[0] for s in stored} == set(by_segment), "every final stored, nothing else"
    assert published["ms"] < 15_000


@pytest.mark.parametrize("single_pc", [True, False], ids=["rtc-v1", "rtc"])
async def test_browser_speaker_is_captioned_in_a_browser_listener(
    single_pc: bool,
    livekit: LiveKitServer,
    repo: Store,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    speaker, listener, stored = await caption_a_browser_speaker(
        livekit.url,
        repo,
        worker_env,
        tmp_path,
        clip=QUILTER,
        room_options={"singlePeerConnection": single_pc},
    )
    assert_captioned(speaker, listener, stored, QUILTER)


@pytest.fixture
def devserver_without_v1(bot_netns: VethNamespace) -> Iterator[LiveKitServer]:
    server = start_devserver(bot_netns, "--no-single-peer-connection", "--departure-timeout", "2")
    try:
        yield server
    finally:
        server.cleanup()


async def test_browser_falls_back_from_rtc_v1_to_rtc(
    devserver_without_v1: LiveKitServer, repo: Store, database_url: str, tmp_path: Path
) -> None:
    """The official server always offers /rtc/v1; ours can refuse it, as older servers do."""
    env = worker_env_for(devserver_without_v1.url, database_url, tmp_path)
    speaker, listener, stored = await caption_a_browser_speaker(
        devserver_without_v1.url, repo, env, tmp_path, clip=QUILTER, room_options={}
    )
    # The browser itself logs the refused /rtc/v1 attempt; nothing else may go wrong.
    refused = ("/rtc/v1?", "status of 404")
    assert_captioned(speaker, listener, stored, QUILTER, expected=refused)
    for client in (speaker, listener):
        fell_back = [line["text"] for line in client["console"] if "/rtc/v1" in line["text"]]
        assert fell_back, "the client tried /rtc/v1 first"


async def test_a_refused_token_shows_the_servers_reason_in_the_browser(
    livekit: LiveKitServer,
) -> None:
    bad = token("mallory", "any-room", secret="another-secret-0123456789abcdefghijk")
    report = await run_browsers(
        {"url": livekit.url, "seconds": 0, "listeners": [{"identity": "mallory", "token": bad}]}
    )
    (client,) = report["listeners"]
    (error,) = [e for e in client["events"] if e["kind"] == "connect_error"]
    assert "Failed to fetch" not in error["message"], error
    assert error["status"] == 401 and "signature is invalid" in error["message"], error
