"""``python -m devserver`` / ``transcriber devserver``: serve until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from core.credentials import dev_mode, secret_problems

from .config import DevServerConfig, build_arg_parser
from .errors import ConfigError
from .server import DevServer

logger = logging.getLogger("devserver")

# attributes that logging itself puts on every record; anything else came from `extra=`
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class _KeyValueFormatter(logging.Formatter):
    """Static messages with their ``extra=`` details appended as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return text


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options = build_arg_parser().parse_args(args)
    level_name = (options.log_level or "INFO").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(_KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("devserver").setLevel(getattr(logging, level_name, logging.INFO))
    try:
        config = DevServerConfig.from_env(os.environ).with_args(args)
    except ConfigError as exc:
        print(f"devserver: {exc}", file=sys.stderr)
        return 2
    # like `livekit-server --dev`, the well-known devkey/secret pair needs an explicit dev mode
    problems = secret_problems(
        {"LIVEKIT_API_SECRET": config.api_secret}, dev_mode=options.dev or dev_mode(os.environ)
    )
    if problems:
        for problem in problems:
            print(f"devserver: {problem} (or pass --dev)", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, exit_with_parent=options.exit_with_parent))
    except OSError as exc:
        print(f"devserver: cannot listen on {config.bind}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(config: DevServerConfig, *, exit_with_parent: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    parent_fd = _watch_parent(loop, stop) if exit_with_parent else None
    server = DevServer(config)
    await server.start()
    try:
        await stop.wait()
        logger.info("stopping")
    finally:
        if parent_fd is not None:
            loop.remove_reader(parent_fd)
            os.close(parent_fd)
        await server.stop()


def _watch_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> int | None:
    """Stop when the process that started us exits, so a crashed test run leaves no server.

    A pidfd of the parent becomes readable when it exits (Linux 5.3+); returns it, or None
    where pidfds are not available.
    """
    parent = os.getppid()
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        logger.warning("cannot watch the parent process on this system")
        return None
    if os.getppid() != parent:  # it exited before the pidfd was opened
        stop.set()
    loop.add_reader(fd, stop.set)
    return fd


if __name__ == "__main__":
    raise SystemExit(main())
