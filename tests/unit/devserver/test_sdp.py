"""The publisher answer's Opus parameters, as LiveKit's server sets them."""

from __future__ import annotations

from devserver.sdp import with_publisher_opus_parameters

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 9",
        "a=recvonly",
        "a=mid:0",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:9 G722/8000",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=recvonly",
        "a=mid:1",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 stereo=1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=sendonly",
        "a=mid:2",
        "a=rtpmap:96 opus/48000/2",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:3",
        "",
    ]
)


def sections(sdp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in sdp.split("\r\nm=")[1:]:
        lines = part.split("\r\n")
        mid = next(line[6:] for line in lines if line.startswith("a=mid:"))
        out[mid] = lines
    return out


def test_published_audio_gets_livekits_opus_fmtp_and_dtx_unless_disabled() -> None:
    dtx = {"0": True, "1": False}
    got = sections(with_publisher_opus_parameters(ANSWER, dtx.get))
    zero = got["0"]
    assert zero[zero.index("a=rtpmap:111 opus/48000/2") + 1] == (
        "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1"
    )
    # a track announced with disable_dtx: the same parameters without usedtx, replacing any
    assert [line for line in got["1"] if line.startswith("a=fmtp:")] == [
        "a=fmtp:96 minptime=10;useinbandfec=1"
    ]


def test_sections_the_client_does_not_publish_on_are_left_alone() -> None:
    out = with_publisher_opus_parameters(ANSWER, {"0": True}.get)
    got, before = sections(out), sections(ANSWER)
    assert got["1"] == before["1"]
    assert got["2"] == before["2"]
    assert got["3"] == before["3"]
    assert out.startswith("v=0\r\n") and out.endswith("\r\n")
