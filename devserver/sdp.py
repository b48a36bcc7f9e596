"""What the dev server reads from and writes into session descriptions: the codec an answer
selects, LiveKit's Opus parameters on a publisher's answer, the Opus codec preference."""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCRtpSender
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import MediaDescription


def opus_payload_type(media: MediaDescription) -> int | None:
    for codec in media.rtp.codecs:
        if codec.mimeType.lower() == "audio/opus" and codec.payloadType is not None:
            return codec.payloadType
    return None


def negotiated_mime_type(media: MediaDescription) -> str:
    """The codec an aiortc answer to ``media`` selects: the offer's first one aiortc supports."""
    common = find_common_codecs(CODECS.get(media.kind, []), media.rtp.codecs)
    return common[0].mimeType if common else ""  # a retransmission codec never comes first


# LiveKit's server answers a publisher's Opus with these parameters, and adds ``usedtx=1``
# unless the track was announced with ``disable_dtx``. The publishing client configures its
# encoder from the answer (libwebrtc reads the remote description), so this is what turns on
# discontinuous transmission: a silent microphone then sends a packet every 400 ms, not 50 a
# second.
_OPUS_ANSWER_FMTP = "minptime=10;useinbandfec=1"


def with_publisher_opus_parameters(sdp: str, dtx_for_mid: Callable[[str], bool | None]) -> str:
    """``sdp`` (an answer to a publisher's offer) with LiveKit's Opus ``fmtp`` on each audio
    section the client publishes on; ``dtx_for_mid(mid)`` is None for sections it does not."""
    head, *sections = sdp.split("\r\nm=")
    out = [head]
    for section in sections:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        opus_pt = next(
            (
                line[9:].split()[0]
                for line in lines
                if line.startswith("a=rtpmap:") and line.lower().split()[-1].startswith("opus/")
            ),
            None,
        )
        dtx = dtx_for_mid(mid) if lines[0].startswith("audio") and mid is not None else None
        if dtx is not None and opus_pt is not None:
            fmtp = f"a=fmtp:{opus_pt} {_OPUS_ANSWER_FMTP}" + (";usedtx=1" if dtx else "")
            lines = [line for line in lines if not line.startswith(f"a=fmtp:{opus_pt} ")]
            at = next(i for i, line in enumerate(lines) if line.startswith(f"a=rtpmap:{opus_pt} "))
            lines.insert(at + 1, fmtp)
        out.append("\r\n".join(lines))
    return "\r\nm=".join(out)


def opus_preferences() -> list[RTCRtpCodecCapability]:
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
