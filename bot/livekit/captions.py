"""Captions on the wire, in the three forms LiveKit clients read, all from one ``Caption``.

1. LiveKit's own transcription text stream: topic ``lk.transcription``, ``sender_identity`` =
   the transcribed participant, attributes ``lk.segment_id`` (one per utterance),
   ``lk.transcribed_track_id`` and ``lk.transcription_final``; every partial resends the whole
   text. LiveKit keeps a foreign ``sender_identity`` only for agents, so the bot joins as one.
   Stock clients (``useTranscriptions``) show these with no custom code.
2. The legacy ``Transcription`` packet, for older clients.
3. A JSON data packet (topic ``transcript``) for custom clients.

On a diarized track (several people on one microphone) the in-track speaker ("Speaker 2") goes
out too: the text stream attribute ``transcriber.speaker`` and the packet's ``speakerInTrack``
(absent / null when the track is not diarized); ``speakerLabel`` is then "Name · Speaker 2".
"""

from __future__ import annotations

import asyncio
import json
import logging

from livekit import rtc

from bot.pipeline.types import SpokenCaption

logger = logging.getLogger("bot.livekit")

TRANSCRIPTION_TOPIC = "lk.transcription"
JSON_TOPIC = "transcript"
ATTR_SEGMENT_ID = "lk.segment_id"
ATTR_TRACK_ID = "lk.transcribed_track_id"
ATTR_FINAL = "lk.transcription_final"
ATTR_SPEAKER = "transcriber.speaker"


def json_packet(item: SpokenCaption) -> bytes:
    c, s = item.caption, item.speaker
    return json.dumps(
        {
            "type": "transcript",
            "speakerId": s.identity,
            "speakerName": s.name,
            "speakerLabel": s.label,
            "speakerInTrack": s.in_track,
            "trackSid": s.track_sid,
            "utteranceId": c.utterance_id,
            "text": c.text,
            "isFinal": c.is_final,
            "language": c.language,
            "startMs": c.start_ms,
            "endMs": c.end_ms,
        },
        ensure_ascii=False,
    ).encode("utf-8")


def stream_attributes(item: SpokenCaption) -> dict[str, str]:
    attributes = {
        ATTR_SEGMENT_ID: item.caption.utterance_id,
        ATTR_TRACK_ID: item.speaker.track_sid,
        ATTR_FINAL: "true" if item.caption.is_final else "false",
    }
    if item.speaker.in_track is not None:
        attributes[ATTR_SPEAKER] = item.speaker.in_track
    return attributes


class RoomCaptionPublisher:
    """Publishes captions into a room as the bot's local participant."""

    def __init__(self, participant: rtc.LocalParticipant, *, legacy: bool = True) -> None:
        self._participant = participant
        self._legacy = legacy

    async def publish(self, item: SpokenCaption) -> None:
        """The three forms go out concurrently: none waits for another's round trips."""
        sends = [self._text_stream(item), self._json(item)]
        if self._legacy:
            sends.append(self._legacy_packet(item))
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _text_stream(self, item: SpokenCaption) -> None:
        writer = await self._participant.stream_text(
            topic=TRANSCRIPTION_TOPIC,
            attributes=stream_attributes(item),
            sender_identity=item.speaker.identity,
        )
        await writer.write(item.caption.text)
        await writer.aclose()

    async def _legacy_packet(self, item: SpokenCaption) -> None:
        c, s = item.caption, item.speaker
        await self._participant.publish_transcription(
            rtc.Transcription(
                participant_identity=s.identity,
                track_sid=s.track_sid,
                segments=[
                    rtc.TranscriptionSegment(
                        id=c.utterance_id,
                        text=c.text,
                        start_time=c.start_ms,
                        end_time=c.end_ms,
                        language=c.language,
                        final=c.is_final,
                    )
                ],
            )
        )

    async def _json(self, item: SpokenCaption) -> None:
        await self._participant.publish_data(
            json_packet(item), reliable=item.caption.is_final, topic=JSON_TOPIC
        )
