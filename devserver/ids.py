"""LiveKit-style identifiers: a type prefix and 12 random base62 characters."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

ROOM_PREFIX = "RM_"
PARTICIPANT_PREFIX = "PA_"
TRACK_PREFIX = "TR_"
EVENT_PREFIX = "EV_"


def new_sid(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def stream_id(participant_sid: str, track_sid: str) -> str:
    """The media stream id the SDK parses to find a forwarded track's owner: ``PA_x|TR_y``."""
    return f"{participant_sid}|{track_sid}"
