"""Enumerations stored in the database (as short strings guarded by CHECK constraints)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeliveryStatus", "DiarizationMode", "JobStatus", "ParticipantRole", "SessionStatus"]


class SessionStatus(StrEnum):
    """CREATED -> LIVE (first join) -> ENDED; CREATED -> EXPIRED (never started)."""

    CREATED = "CREATED"
    LIVE = "LIVE"
    ENDED = "ENDED"
    EXPIRED = "EXPIRED"


class ParticipantRole(StrEnum):
    HOST = "HOST"
    GUEST = "GUEST"


class JobStatus(StrEnum):
    """REQUESTED (waiting) -> RUNNING (leased by a worker) -> STOPPED; lost leases are reclaimed."""

    REQUESTED = "REQUESTED"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class TranscriptVersion(StrEnum):
    """Which speaker labels a transcript carries: ``live`` (the bot's, as captioned) or
    ``final`` (the after-meeting diarization's, mapped onto the live names)."""

    LIVE = "live"
    FINAL = "final"


class RecordingStatus(StrEnum):
    """Where a kept track recording stands in the after-meeting pass: ``recording`` (the bot
    is writing it), ``ready`` (the stream ended: waiting for the pass), ``diarizing`` (a worker
    claimed it), ``diarized`` (its segments relabelled) or ``failed`` (too short, silent, or the
    diarizer failed: the segments keep their live labels)."""

    RECORDING = "recording"
    READY = "ready"
    DIARIZING = "diarizing"
    DIARIZED = "diarized"
    FAILED = "failed"


class DiarizationMode(StrEnum):
    """Whether the bot splits one microphone's speech by speaker: ``off`` labels every segment
    with the participant (what the bot does today for every mode), ``on`` always diarizes,
    ``auto`` diarizes when a track is found to carry several voices."""

    OFF = "off"
    ON = "on"
    AUTO = "auto"


class DeliveryStatus(StrEnum):
    """An outbound webhook delivery: PENDING (due or backing off) -> DELIVERED | FAILED."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
