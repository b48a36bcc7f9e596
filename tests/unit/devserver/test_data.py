"""LiveKit's forwarding rules for data packets."""

from __future__ import annotations

from livekit.protocol import models

from devserver.data import DataSender, forward_data_packet

ALICE = DataSender(
    sid="PA_a", identity="alice", hidden=False, is_agent=False, can_publish_data=True
)
BOT = DataSender(sid="PA_b", identity="bot", hidden=True, is_agent=True, can_publish_data=True)


def decoded(payload: bytes) -> models.DataPacket:
    packet = models.DataPacket()
    packet.ParseFromString(payload)
    return packet


def text_header(identity: str) -> bytes:
    packet = models.DataPacket(participant_identity=identity)
    packet.stream_header.stream_id = "s1"
    packet.stream_header.topic = "lk.transcription"
    packet.stream_header.text_header.SetInParent()
    return packet.SerializeToString()


def test_user_packets_carry_the_senders_identity() -> None:
    packet = models.DataPacket(participant_identity="mallory")
    packet.user.payload = b"hi"
    packet.user.topic = "chat"
    packet.user.destination_identities.append("bob")
    forward = forward_data_packet(ALICE, models.DataPacket.LOSSY, packet.SerializeToString())
    assert forward is not None and forward.destination_identities == ("bob",)
    out = decoded(forward.payload)
    assert out.participant_identity == "alice" and out.user.participant_identity == "alice"
    assert out.user.participant_sid == "PA_a" and out.kind == models.DataPacket.LOSSY
    assert list(out.destination_identities) == ["bob"]


def test_hidden_senders_are_anonymous() -> None:
    packet = models.DataPacket()
    packet.user.payload = b"x"
    forward = forward_data_packet(BOT, models.DataPacket.RELIABLE, packet.SerializeToString())
    assert forward is not None
    out = decoded(forward.payload)
    assert out.participant_identity == "" and out.user.participant_identity == ""


def test_an_agents_text_stream_may_name_another_participant() -> None:
    forward = forward_data_packet(BOT, models.DataPacket.RELIABLE, text_header("alice"))
    assert forward is not None
    out = decoded(forward.payload)
    assert out.participant_identity == "alice"
    assert out.stream_header.text_header.generated


def test_a_participants_text_stream_cannot_name_another() -> None:
    forward = forward_data_packet(ALICE, models.DataPacket.RELIABLE, text_header("bob"))
    assert forward is not None
    out = decoded(forward.payload)
    assert out.participant_identity == "alice" and not out.stream_header.text_header.generated


def test_an_agents_byte_stream_keeps_its_own_identity() -> None:
    packet = models.DataPacket(participant_identity="alice")
    packet.stream_header.stream_id = "s2"
    packet.stream_header.byte_header.name = "file"
    forward = forward_data_packet(BOT, models.DataPacket.RELIABLE, packet.SerializeToString())
    assert forward is not None
    assert decoded(forward.payload).participant_identity == ""  # the hidden bot's own


def test_transcriptions_only_from_agents() -> None:
    packet = models.DataPacket()
    packet.transcription.transcribed_participant_identity = "alice"
    packet.transcription.segments.add(id="SG_1", text="hello", final=True)
    raw = packet.SerializeToString()
    assert forward_data_packet(ALICE, models.DataPacket.RELIABLE, raw) is None
    forward = forward_data_packet(BOT, models.DataPacket.RELIABLE, raw)
    assert forward is not None
    assert decoded(forward.payload).transcription.segments[0].text == "hello"


def test_dropped_packets() -> None:
    metrics = models.DataPacket()
    metrics.metrics.timestamp_ms = 1
    assert forward_data_packet(ALICE, 0, metrics.SerializeToString()) is None
    assert forward_data_packet(ALICE, 0, b"\xff\xff\xff garbage") is None
    assert forward_data_packet(ALICE, 0, b"") is None  # no value at all
    silenced = DataSender(
        sid="PA_c", identity="c", hidden=False, is_agent=False, can_publish_data=False
    )
    user = models.DataPacket()
    user.user.payload = b"x"
    assert forward_data_packet(silenced, 0, user.SerializeToString()) is None
