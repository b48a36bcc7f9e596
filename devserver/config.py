"""Settings of the dev server: one frozen object, built from the environment, then CLI flags.

Every variable is documented in ``devserver/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_API_KEY = "devkey"
DEFAULT_API_SECRET = "secret"  # the same well-known dev credentials as `livekit-server --dev`


@dataclass(frozen=True, slots=True)
class DevServerConfig:
    """Everything the dev server can be told; defaults mirror ``livekit-server --dev``."""

    bind: str = "127.0.0.1"
    port: int = 7880
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    webhook_urls: tuple[str, ...] = ()
    # a room nobody (but agents) ever joined closes after this long
    empty_timeout_s: float = 300.0
    # a room closes this long after its last non-agent participant left
    departure_timeout_s: float = 20.0
    # serve /rtc/v1 (single peer connection); when off it answers 404 so the SDK uses /rtc
    single_peer_connection: bool = True
    # join creates the room when it does not exist; when off, rooms come from CreateRoom only
    auto_create_rooms: bool = True
    ping_interval_s: int = 5
    ping_timeout_s: int = 15
    # signal messages queued for one client before it is considered stuck and dropped
    signal_queue_size: int = 1024
    # encoded audio packets queued per forwarded stream (20 ms each) before the oldest is dropped
    forward_queue_packets: int = 50
    webhook_queue_size: int = 1000
    webhook_timeout_s: float = 5.0
    # optional file the server writes {"url": ..., "http_url": ...} to once it listens
    ready_file: str | None = None

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_secret:
            raise ConfigError("api_key and api_secret must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        if self.ping_interval_s <= 0 or self.ping_timeout_s <= self.ping_interval_s:
            # the SDK panics on a zero interval; a timeout at or below the interval drops clients
            raise ConfigError("ping_interval_s must be > 0 and ping_timeout_s > ping_interval_s")
        if self.empty_timeout_s < 0 or self.departure_timeout_s < 0:
            raise ConfigError("room timeouts must not be negative")
        for url in self.webhook_urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"webhook URL must be http(s): {url!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DevServerConfig:
        """Read the ``LIVEKIT_*`` and ``DEVSERVER_*`` variables; unset ones keep their default."""
        values: dict[str, object] = {}
        if key := environ.get("LIVEKIT_API_KEY"):
            values["api_key"] = key
        if secret := environ.get("LIVEKIT_API_SECRET"):
            values["api_secret"] = secret
        if bind := environ.get("DEVSERVER_BIND"):
            values["bind"] = bind
        if port := environ.get("DEVSERVER_PORT"):
            values["port"] = _parse_int("DEVSERVER_PORT", port)
        if urls := environ.get("DEVSERVER_WEBHOOK_URLS"):
            values["webhook_urls"] = tuple(u.strip() for u in urls.split(",") if u.strip())
        if empty := environ.get("DEVSERVER_EMPTY_TIMEOUT"):
            values["empty_timeout_s"] = _parse_float("DEVSERVER_EMPTY_TIMEOUT", empty)
        if departure := environ.get("DEVSERVER_DEPARTURE_TIMEOUT"):
            values["departure_timeout_s"] = _parse_float("DEVSERVER_DEPARTURE_TIMEOUT", departure)
        if single_pc := environ.get("DEVSERVER_SINGLE_PEER_CONNECTION"):
            values["single_peer_connection"] = _parse_bool(
                "DEVSERVER_SINGLE_PEER_CONNECTION", single_pc
            )
        if ping_interval := environ.get("DEVSERVER_PING_INTERVAL"):
            values["ping_interval_s"] = _parse_int("DEVSERVER_PING_INTERVAL", ping_interval)
        if ping_timeout := environ.get("DEVSERVER_PING_TIMEOUT"):
            values["ping_timeout_s"] = _parse_int("DEVSERVER_PING_TIMEOUT", ping_timeout)
        if auto_create := environ.get("DEVSERVER_AUTO_CREATE_ROOMS"):
            values["auto_create_rooms"] = _parse_bool("DEVSERVER_AUTO_CREATE_ROOMS", auto_create)
        return cls(**values)  # type: ignore[arg-type]  # keys are the field names above

    def with_args(self, argv: Sequence[str]) -> DevServerConfig:
        """Apply command-line flags (they override the environment)."""
        args = build_arg_parser().parse_args(list(argv))
        changes: dict[str, object] = {}
        for field in ("bind", "port", "api_key", "api_secret", "ready_file"):
            value = getattr(args, field)
            if value is not None:
                changes[field] = value
        if args.webhook_url:
            changes["webhook_urls"] = tuple(args.webhook_url)
        if args.empty_timeout is not None:
            changes["empty_timeout_s"] = args.empty_timeout
        if args.departure_timeout is not None:
            changes["departure_timeout_s"] = args.departure_timeout
        if args.ping_interval is not None:
            changes["ping_interval_s"] = args.ping_interval
        if args.ping_timeout is not None:
            changes["ping_timeout_s"] = args.ping_timeout
        if args.no_single_peer_connection:
            changes["single_peer_connection"] = False
        if args.no_auto_create_rooms:
            changes["auto_create_rooms"] = False
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devserver",
        description=(
            "LiveKit-compatible development server (tests, demo, local work). "
            "Production uses a real LiveKit server or LiveKit Cloud."
        ),
    )
    parser.add_argument("--bind", help="address to listen on (DEVSERVER_BIND, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 for any free one (DEVSERVER_PORT, 7880)")
    parser.add_argument("--api-key", help="API key (LIVEKIT_API_KEY, devkey)")
    parser.add_argument("--api-secret", help="API secret (LIVEKIT_API_SECRET, secret)")
    parser.add_argument(
        "--webhook-url",
        action="append",
        help="POST webhooks here; repeat for several (DEVSERVER_WEBHOOK_URLS, comma-separated)",
    )
    parser.add_argument(
        "--empty-timeout",
        type=float,
        help="seconds an unjoined room lives (DEVSERVER_EMPTY_TIMEOUT, 300)",
    )
    parser.add_argument(
        "--departure-timeout",
        type=float,
        help="seconds a room lives after its last participant left "
        "(DEVSERVER_DEPARTURE_TIMEOUT, 20)",
    )
    parser.add_argument(
        "--ping-interval",
        type=int,
        help="seconds between client pings (DEVSERVER_PING_INTERVAL, 5)",
    )
    parser.add_argument(
        "--ping-timeout",
        type=int,
        help="seconds without a message before a client is dropped (DEVSERVER_PING_TIMEOUT, 15)",
    )
    parser.add_argument(
        "--no-single-peer-connection",
        action="store_true",
        help="answer /rtc/v1 with 404 so clients use /rtc with two peer connections",
    )
    parser.add_argument(
        "--no-auto-create-rooms",
        action="store_true",
        help="joining a room that was not created with CreateRoom fails",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="accept the well-known devkey/secret pair and other weak secrets "
        "(as TRANSCRIBER_DEV_MODE=1 does)",
    )
    parser.add_argument("--ready-file", help="write the URL as JSON to this file once listening")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the parent process exits (for servers started by tests)",
    )
    return parser


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
