"""The stores the API and the bot share, built over one sessionmaker."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.jobs import JobStore
from store.livekit_events import LiveKitEventStore
from store.recordings import RecordingStore
from store.retention import RetentionStore
from store.sessions import SessionStore
from store.transcripts import TranscriptStore
from store.usage import UsageStore
from store.webhooks import WebhookStore

__all__ = ["Store"]


class Store:
    """``Store(sessionmaker)``: cheap to build; each store's methods are one transaction (or one
    read without a transaction) and return plain records (:mod:`store.records`).

    * ``sessions``: sessions, the lifecycle sweeper, participants (:mod:`store.sessions`);
    * ``transcripts``: final segments, pages, search, exports (:mod:`store.transcripts`);
    * ``usage``: track usage, reports, quotas, limits (:mod:`store.usage`);
    * ``jobs``: transcription jobs and their notifications (:mod:`store.jobs`);
    * ``retention``: per-space retention policies and the purge (:mod:`store.retention`).
    * ``recordings``: kept track audio and the after-meeting pass's queue (:mod:`store.recordings`).
    * ``livekit_events``: LiveKit webhook event ids already handled (:mod:`store.livekit_events`).
    * ``webhooks``: outbound webhook endpoints, the delivery outbox and log (:mod:`store.webhooks`).
    """

    __slots__ = (
        "jobs",
        "livekit_events",
        "recordings",
        "retention",
        "sessions",
        "transcripts",
        "usage",
        "webhooks",
    )

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = SessionStore(sessionmaker)
        self.transcripts = TranscriptStore(sessionmaker)
        self.usage = UsageStore(sessionmaker)
        self.jobs = JobStore(sessionmaker)
        self.retention = RetentionStore(sessionmaker)
        self.recordings = RecordingStore(sessionmaker)
        self.livekit_events = LiveKitEventStore(sessionmaker)
        self.webhooks = WebhookStore(sessionmaker)
