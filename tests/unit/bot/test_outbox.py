from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.livekit.captions import json_packet
from bot.pipeline.outbox import CaptionOutbox
from bot.pipeline.types import Caption, Speaker, SpokenCaption

SPEAKER = Speaker("alice", "Alice", "TR_1", "Alice")


def item(utterance: str, text: str, final: bool = False) -> SpokenCaption:
    return SpokenCaption(
        Caption(utterance, text, final, 0, 100, "en", 0.9), SPEAKER, datetime.now(UTC)
    )


async def drain(outbox: CaptionOutbox) -> list[str]:
    out = []
    while (x := await outbox.get()) is not None:
        out.append(f"{x.caption.utterance_id}:{x.caption.text}:{x.caption.is_final}")
    return out


async def test_unsent_partials_are_replaced_by_newer_ones_finals_never() -> None:
    outbox = CaptionOutbox()
    for x in [
        item("u1", "a"),
        item("u1", "a b"),
        item("u1", "a b c"),
        item("u1", "A b c.", True),
        item("u2", "d"),
        item("u2", "d e"),
        item("u2", "D e.", True),
    ]:
        await outbox.put(x)
    outbox.close()
    assert await drain(outbox) == [
        "u1:a b c:False",
        "u1:A b c.:True",
        "u2:d e:False",
        "u2:D e.:True",
    ]
    assert outbox.replaced == 3


async def test_get_waits_for_captions_and_ends_after_close() -> None:
    outbox = CaptionOutbox()
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    await outbox.put(item("u1", "hi", True))
    assert (await getter) is not None
    outbox.close()
    assert await outbox.get() is None


async def test_finals_past_the_bound_wait_for_the_publisher_and_are_all_sent() -> None:
    outbox = CaptionOutbox(max_finals=2)
    await outbox.put(item("u1", "one", True))
    await outbox.put(item("u2", "two", True))
    third = asyncio.create_task(outbox.put(item("u3", "three", True)))
    await asyncio.sleep(0.01)
    assert not third.done(), "a third final waits: backpressure, not a drop"
    first = await outbox.get()
    assert first is not None and first.caption.text == "one"
    await asyncio.wait_for(third, 1.0)
    outbox.close()
    assert await drain(outbox) == ["u2:two:True", "u3:three:True"]


def test_json_packet_fields() -> None:
    import json

    packet = json.loads(json_packet(item("u9", "Привет", True)))
    assert packet == {
        "type": "transcript",
        "speakerId": "alice",
        "speakerName": "Alice",
        "speakerLabel": "Alice",
        "speakerInTrack": None,
        "trackSid": "TR_1",
        "utteranceId": "u9",
        "text": "Привет",
        "isFinal": True,
        "language": "en",
        "startMs": 0,
        "endMs": 100,
    }
