"""Pass-through forwarding: timestamps, bounds, payload filtering."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from devserver.media import AudioFanout, DownTrack


async def drain(track: DownTrack, count: int) -> list[int]:
    return [(await track.recv()).pts for _ in range(count)]


async def test_timestamps_follow_the_source_across_wraparound() -> None:
    source = object()
    track = DownTrack(queue_packets=50)
    track.attach(source)
    await_first = track.recv()
    track.push(source, 0xFFFFFC40, b"a")  # 960 before the 32-bit wrap
    assert (await await_first).pts == 0
    for ts in (0x00000000, 0x000003C0, 0x00000780 + 960 * 10):  # a DTX gap of 10 frames
        track.push(source, ts, b"x")
    assert await drain(track, 3) == [960, 1920, 960 * 13]


async def test_a_new_source_continues_the_timeline() -> None:
    first, second = object(), object()
    track = DownTrack(queue_packets=50)
    track.attach(first)
    track.push(first, 1000, b"a")
    track.push(first, 1960, b"b")
    track.attach(second)
    track.push(first, 2920, b"stale")  # a former source is ignored
    track.push(second, 123456, b"c")
    track.push(second, 124416, b"d")
    pts = await drain(track, 4)
    assert pts[:2] == [0, 960]
    assert pts[2] > 960 and pts[3] == pts[2] + 960


async def test_queue_is_bounded_and_drops_the_oldest() -> None:
    source = object()
    track = DownTrack(queue_packets=4)
    track.attach(source)
    for i in range(3):
        track.push(source, 960 * i, bytes([i]))
    assert track.dropped_packets == 0
    first = await track.recv()  # started: the full queue size applies from now on
    assert bytes(first) == b"\x00"
    for i in range(3, 10):
        track.push(source, 960 * i, bytes([i]))
    assert track.dropped_packets == 5  # 2 queued + 7 new into 4 places
    assert [bytes(await track.recv()) for _ in range(4)] == [bytes([i]) for i in range(6, 10)]


async def test_before_the_sender_starts_only_recent_audio_is_kept() -> None:
    source = object()
    track = DownTrack(queue_packets=50)
    track.attach(source)
    for i in range(20):
        track.push(source, 960 * i, bytes([i]))
    assert bytes(await track.recv()) == bytes([15])


async def test_paused_and_stopped_tracks_take_nothing() -> None:
    source = object()
    track = DownTrack(queue_packets=4)
    track.attach(source)
    track.set_paused(True)
    track.push(source, 0, b"x")
    assert track.forwarded_packets == 0
    track.stop()
    track.push(source, 960, b"y")
    assert track.forwarded_packets == 0


async def test_fanout_forwards_opus_payloads_only() -> None:
    fanout = AudioFanout(payload_type=111)
    one, two = DownTrack(queue_packets=8), DownTrack(queue_packets=8)
    fanout.add_sink(one)
    fanout.add_sink(two)
    await fanout.handle_rtp_packet(RtpPacket(payload_type=111, timestamp=0, payload=b"op"), 0)
    await fanout.handle_rtp_packet(RtpPacket(payload_type=13, timestamp=960, payload=b"cn"), 0)
    await fanout.handle_rtp_packet(RtpPacket(payload_type=111, timestamp=960, payload=b""), 0)
    assert (one.forwarded_packets, two.forwarded_packets, fanout.received_packets) == (1, 1, 1)
    fanout.remove_sink(two)
    await fanout.handle_rtp_packet(RtpPacket(payload_type=111, timestamp=1920, payload=b"op"), 0)
    assert (one.forwarded_packets, two.forwarded_packets) == (2, 1)
    assert two.source is None and fanout.sink_count == 1
