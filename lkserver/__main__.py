"""``python -m lkserver install`` builds the pinned server; ``path`` prints where it is."""

from __future__ import annotations

import sys

from .install import InstallError, find_binary, install


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "install"
    try:
        if command == "install":
            install(progress=lambda line: print(f"livekit-server: {line}", flush=True))
            return 0
        if command == "path":
            found = find_binary()
            if found is None:
                print("livekit-server: not installed (run: make livekit-server)", file=sys.stderr)
                return 1
            print(found)
            return 0
    except InstallError as exc:
        print(f"livekit-server: {exc}", file=sys.stderr)
        return 1
    print(f"usage: python -m lkserver [install|path] (got {command!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
