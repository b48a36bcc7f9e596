"""Either LiveKit server in a test's network namespace: ours (``dev``) or the official one.

Both come back as a :class:`lkserver.LiveKitServer` with the same test keys, so a test or a
benchmark is written once and parametrized over ``SERVER_KINDS``. The official server must be
installed (``make livekit-server``, which ``make test`` runs first); without it a test that asks
for it fails with that instruction rather than passing on the dev server alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from devserver.launcher import DevServerProcess
from lkserver import InstallError, LiveKitServer, OfficialServerProcess, ServerConfig, find_binary
from tests.support.netns import VethNamespace

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "devkey"
# at least 32 bytes: PyJWT warns about shorter HMAC keys, and tests turn warnings into errors
API_SECRET = "devserver-e2e-secret-0123456789abcdef"
SERVER_KINDS = ("dev", "official")


def start_devserver(netns: VethNamespace, *args: str) -> DevServerProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
    }
    server = DevServerProcess(
        ["--bind", netns.namespace_address, "--port", "0", *args],
        env=env,
        command_prefix=netns.command([]),
        cwd=str(REPO_ROOT),
    )
    server.start()
    return server


def official_config(
    netns: VethNamespace,
    *,
    node: int = 0,
    webhook_urls: Sequence[str] = (),
    departure_timeout_s: int = 20,
    empty_timeout_s: int = 300,
    redis_address: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> ServerConfig:
    return ServerConfig.on(
        netns.namespace_address,
        api_key=API_KEY,
        api_secret=API_SECRET,
        node=node,
        webhook_urls=webhook_urls,
        departure_timeout_s=departure_timeout_s,
        empty_timeout_s=empty_timeout_s,
        redis_address=redis_address,
        extra=extra,
    )


def start_official(
    netns: VethNamespace, config: ServerConfig, name: str = "livekit"
) -> OfficialServerProcess:
    if find_binary() is None:
        pytest.fail("the official LiveKit server is not installed: run `make livekit-server`")
    server = OfficialServerProcess(config, command_prefix=netns.command([]), name=name)
    try:
        server.start()
    except InstallError as exc:
        pytest.fail(str(exc))
    return server


def start_server(
    kind: str,
    netns: VethNamespace,
    *,
    webhook_urls: Sequence[str] = (),
    departure_timeout_s: int = 20,
    empty_timeout_s: int = 300,
) -> LiveKitServer:
    """A started server of ``kind`` ("dev" or "official") inside ``netns``."""
    if kind == "official":
        config = official_config(
            netns,
            webhook_urls=webhook_urls,
            departure_timeout_s=departure_timeout_s,
            empty_timeout_s=empty_timeout_s,
        )
        return start_official(netns, config)
    args = ["--departure-timeout", str(departure_timeout_s)]
    args += ["--empty-timeout", str(empty_timeout_s)]
    for url in webhook_urls:
        args += ["--webhook-url", url]
    return start_devserver(netns, *args)
