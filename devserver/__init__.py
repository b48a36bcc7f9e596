"""A LiveKit-compatible development server for tests, the demo and local work.

Production uses a real LiveKit server or LiveKit Cloud. See ``devserver/README.md``.
"""

from __future__ import annotations

from .config import DevServerConfig
from .errors import AuthError, ConfigError, DevServerError, TwirpError
from .server import DevServer

__all__ = [
    "AuthError",
    "ConfigError",
    "DevServer",
    "DevServerConfig",
    "DevServerError",
    "TwirpError",
]
