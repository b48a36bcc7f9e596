"""Enumerations stored in the database (as short strings guarded by CHECK constraints)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeliveryStatus", "JobStatus", "ParticipantRole", "SessionStatus"]


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


class DeliveryStatus(StrEnum):
    """An outbound webhook delivery: PENDING (due or backing off) -> DELIVERED | FAILED."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
