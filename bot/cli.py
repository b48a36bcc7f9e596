"""The ``transcriber`` command: one entry point for every process of the product.

Each subcommand lives in its own package and is imported only when asked for, so
``transcriber transcribe`` never loads the API and ``transcriber api`` never loads
a speech model.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, one-line help); each function takes argv, returns the exit code
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "transcribe": ("bot.transcribe_cli", "main", "transcribe an audio file through the engine"),
    "bot": ("bot.__main__", "main", "run the LiveKit transcription worker"),
    "api": ("api.__main__", "main", "run the HTTP API"),
    "migrate": ("store.migrate", "main", "apply database migrations (alembic upgrade head)"),
    "devserver": ("devserver.__main__", "main", "run the LiveKit-compatible dev server"),
}


def _usage() -> str:
    lines = ["usage: transcriber COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"transcriber: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = _COMMANDS[name]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
