"""Prometheus metrics of the worker (``/metrics`` on ``BOT_HTTP_PORT``)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_ROOMS = Gauge("transcriber_active_rooms", "Rooms this worker is in")
ACTIVE_TRACKS = Gauge("transcriber_active_tracks", "Tracks being transcribed")
SPEAKING_STREAMS = Gauge(
    "transcriber_speaking_streams", "Streams inside an utterance now (VAD says speech)"
)
CAPTIONS = Counter("transcriber_captions_total", "Captions published", ["kind"])
CAPTION_LATENCY = Histogram(
    "transcriber_caption_latency_seconds",
    "End of speech to final caption published",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)
PARTIALS_DROPPED = Gauge("transcriber_partials_dropped", "Partial decodes dropped under load")
DECODE_QUEUE = Gauge("transcriber_decode_queue_depth", "Decodes waiting", ["kind"])
SPOOL_PENDING = Gauge("transcriber_spool_pending", "Final segments not yet in the database")
# Lines of spool files that are not finals ("corrupt"), finals the database refused in a way
# nobody foresaw ("refused"), and whole leftover files whose replay failed ("replay_failed"),
# moved aside to <file>.bad-<time> in the spool folder (bot/spool.py).
SPOOL_QUARANTINED = Counter(
    "transcriber_spool_quarantined_total", "Spool lines, finals or files moved aside", ["reason"]
)
DB_WRITE_FAILURES = Counter(
    "transcriber_db_write_failures_total", "Database writes that failed", ["kind"]
)
PIPELINE_FAILURES = Counter("transcriber_pipeline_failures_total", "Track pipelines that failed")
TRACKS_REFUSED = Counter("transcriber_tracks_refused_total", "Tracks refused by limits or quota")
LIVEKIT_CONNECT_FAILURES = Counter(
    "transcriber_livekit_connect_failures_total", "Failed room joins"
)
LIVEKIT_REJOINS = Counter(
    "transcriber_livekit_rejoins_total", "Rooms rejoined after LiveKit dropped the connection"
)
# 1 while the worker is connected to the database and listening for jobs (its /ready), else 0.
WORKER_READY = Gauge(
    "transcriber_worker_ready", "1 while the worker listens for jobs in the database, else 0"
)
# The price of a billed track minute, so dashboards can show spend per hour
# (active tracks x 60 x price) without a copy of TRANSCRIPTION_COST_PER_MINUTE of their own.
COST_PER_MINUTE = Gauge(
    "transcriber_cost_per_minute",
    "Price of one billed minute of a transcribed track (TRANSCRIPTION_COST_PER_MINUTE)",
    ["currency"],
)


def publish_price(cost_per_minute: Decimal, currency: str) -> None:
    """Export the configured price (called once at start)."""
    COST_PER_MINUTE.labels(currency).set(float(cost_per_minute))


# The audio kept of diarized tracks for the after-meeting pass (bot/track_recording.py):
# "started", "not_started" (the row or file could not be made: the track runs unrecorded),
# "write_failed" (the disk refused a write: the recording stops, the captions go on).
RECORDINGS = Counter("transcriber_recordings_total", "Track recordings by outcome", ["outcome"])
# After-meeting passes (bot/final_diarization.py) by outcome: "diarized", "too_short" (too short
# or silent: live labels kept), "failed" (diarizer or audio failure: live labels kept).
FINAL_DIARIZATIONS = Counter(
    "transcriber_final_diarizations_total", "After-meeting diarization passes", ["outcome"]
)
# Recording files deleted: "done" (after the pass), "expired" (recording_days), "orphan" (no row)
RECORDINGS_DELETED = Counter(
    "transcriber_recordings_deleted_total", "Track recording files deleted", ["reason"]
)
# Live diarization (bot/pipeline/track_diarization.py): blocks the diarizer failed on (their
# captions keep the participant's label), and blocks not diarized because the track's backlog
# was full (the executor is behind: more diarized tracks than the worker's CPU allows).
DIARIZATION_ERRORS = Counter(
    "transcriber_diarization_errors_total", "Live diarization blocks that failed"
)
DIARIZATION_BLOCKS_SKIPPED = Counter(
    "transcriber_diarization_blocks_skipped_total",
    "Live diarization blocks skipped because the track's backlog was full",
)
DIARIZATION_LATE_FINALS = Counter(
    "transcriber_diarization_late_finals_total",
    "Diarized finals that waited DIARIZATION_MAX_WAIT_MS in vain (participant label kept)",
)
