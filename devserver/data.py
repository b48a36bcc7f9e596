"""LiveKit's rules for forwarding a participant's data packets, as a pure function.

Mirrored from the real server:
- the server asserts the sender's identity on every packet (empty for hidden senders);
- an **agent** may speak for someone else: a text stream header or chat message whose
  ``participant_identity`` names another participant keeps that identity (and is marked
  ``generated``); byte streams and everything else get the sender's own identity;
- legacy ``Transcription`` packets are forwarded only from agents;
- metrics packets and deprecated speaker packets are not forwarded;
- packets from a participant without ``canPublishData`` are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from livekit.protocol import models


@dataclass(frozen=True, slots=True)
class DataSender:
    sid: str
    identity: str
    hidden: bool
    is_agent: bool
    can_publish_data: bool


@dataclass(frozen=True, slots=True)
class Forward:
    """A packet to deliver, re-encoded, and who may receive it (empty: everyone else)."""

    payload: bytes
    destination_identities: tuple[str, ...]
    destination_sids: tuple[str, ...]


def forward_data_packet(sender: DataSender, kind: int, raw: bytes) -> Forward | None:
    """Apply the forwarding rules to a packet received from ``sender`` on channel ``kind``."""
    if not sender.can_publish_data:
        return None
    packet = models.DataPacket()
    try:
        packet.ParseFromString(raw)
    except Exception:  # a malformed packet from a client is dropped, never fatal
        return None
    value = packet.WhichOneof("value")
    own_identity = "" if sender.hidden else sender.identity
    keeps_foreign_identity = (
        sender.is_agent
        and bool(packet.participant_identity)
        and packet.participant_identity != sender.identity
    )
    override_identity = True
    destination_sids: tuple[str, ...] = ()

    if value is None or value in {"metrics", "speaker"}:
        return None
    if value == "transcription" and not sender.is_agent:
        return None
    if value == "user":
        user = packet.user
        user.participant_sid = "" if sender.hidden else sender.sid
        user.participant_identity = own_identity
        if packet.destination_identities:
            del user.destination_identities[:]
            user.destination_identities.extend(packet.destination_identities)
        else:
            packet.destination_identities.extend(user.destination_identities)
        destination_sids = tuple(user.destination_sids)
    elif value == "chat_message" and keeps_foreign_identity:
        override_identity = False
        packet.chat_message.generated = True
    elif (
        value == "stream_header"
        and keeps_foreign_identity
        and packet.stream_header.WhichOneof("content_header") == "text_header"
    ):
        override_identity = False
        packet.stream_header.text_header.generated = True

    if override_identity:
        packet.participant_identity = own_identity
    packet.kind = kind  # type: ignore[assignment]  # the channel it came on is the truth
    return Forward(
        payload=packet.SerializeToString(),
        destination_identities=tuple(packet.destination_identities),
        destination_sids=destination_sids,
    )
