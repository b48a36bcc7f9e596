#!/usr/bin/env python3
"""The image's HEALTHCHECK: GET /health of whichever process the container runs.

The role is read from PID 1's command line (``transcriber api`` or ``transcriber bot``), or from
``TRANSCRIBER_ROLE``; the port from ``API_PORT`` or ``BOT_HTTP_PORT``. Exit 0: healthy.
A ``migrate`` container (or anything else) has no HTTP port and is healthy while it runs.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def role(cmdline: bytes | None = None) -> str:
    explicit = os.environ.get("TRANSCRIBER_ROLE")
    if explicit:
        return explicit
    if cmdline is None:
        try:
            cmdline = Path("/proc/1/cmdline").read_bytes()
        except OSError:
            return "unknown"
    words = [w.decode(errors="replace") for w in cmdline.split(b"\0") if w]
    for word in words:
        if word in {"api", "bot", "migrate"}:
            return word
    return "unknown"


def url_for(which: str) -> str | None:
    if which == "api":
        return f"http://127.0.0.1:{os.environ.get('API_PORT', '8080')}/health"
    if which == "bot":
        return f"http://127.0.0.1:{os.environ.get('BOT_HTTP_PORT', '8081')}/health"
    return None


def main() -> int:
    url = url_for(role())
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
