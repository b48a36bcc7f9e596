"""The official LiveKit server in the toolchain: where it lives, how it is built, how it runs.

Production runs the official server (``github.com/livekit/livekit-server``) or LiveKit Cloud, so
the tests, the benchmarks and the demo run against it too. This package

* pins the release (:data:`VERSION`) and builds it once with ``go install`` into the project's
  cache (``python -m lkserver install``, which ``make livekit-server`` calls);
* finds that binary (:func:`find_binary`; ``LIVEKIT_SERVER_BIN`` overrides);
* runs it as a child process with a generated config (:class:`OfficialServerProcess`): keys,
  webhooks, ports, the address it binds and advertises (a non-loopback one: the SDKs' WebRTC never
  uses loopback), Redis for several nodes, and stops it cleanly.

``devserver/`` (our own LiveKit-compatible server) stays the zero-install default; both launchers
offer the same :class:`LiveKitServer` surface, so a test or benchmark takes either.
"""

from __future__ import annotations

from .install import (
    MODULE,
    VERSION,
    InstallError,
    binary_path,
    find_binary,
    go_available,
    install,
)
from .process import LiveKitServer, OfficialServerProcess, ServerConfig, free_port

__all__ = [
    "MODULE",
    "VERSION",
    "InstallError",
    "LiveKitServer",
    "OfficialServerProcess",
    "ServerConfig",
    "binary_path",
    "find_binary",
    "free_port",
    "go_available",
    "install",
]
