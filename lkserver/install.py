"""Build the pinned official LiveKit server once, into the project's cache.

``go install github.com/livekit/livekit-server/cmd/server@VERSION`` compiles the release from the
Go module proxy (a first build takes minutes on two cores; Go's own caches make later ones
seconds). The command package is named ``server``, so the binary is renamed ``livekit-server``
and kept under ``.cache/livekit-server/<version>/``. ``go install pkg@version`` refuses modules
with ``replace`` directives; the pinned release has none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

MODULE = "github.com/livekit/livekit-server"
VERSION = "v1.13.5"  # declares go 1.26; no replace directives
MIN_GO = (1, 26)
REPO = Path(__file__).resolve().parent.parent
BINARY_NAME = "livekit-server"


class InstallError(Exception):
    """The server could not be installed; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("LIVEKIT_SERVER_CACHE") or REPO / ".cache" / "livekit-server")


def binary_path(version: str = VERSION) -> Path:
    return cache_dir() / version / BINARY_NAME


def find_binary() -> Path | None:
    """``LIVEKIT_SERVER_BIN`` when set, else the pinned build in the cache, else None."""
    override = os.environ.get("LIVEKIT_SERVER_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise InstallError(f"LIVEKIT_SERVER_BIN={override} is not an executable file")
        return path
    path = binary_path()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def go_version() -> tuple[int, int] | None:
    """The local Go toolchain's (major, minor), or None without one."""
    go = shutil.which("go")
    if go is None:
        return None
    out = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False, timeout=60
    ).stdout
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def go_available() -> bool:
    found = go_version()
    return found is not None and found >= MIN_GO


def install(progress: Callable[[str], None] = print) -> Path:
    """The pinned server binary, built first if it is not in the cache yet."""
    target = binary_path()
    if target.is_file():
        return target
    found = go_version()
    if found is None:
        raise InstallError(
            "Go is not installed, so the official LiveKit server cannot be built. Install Go "
            f"{MIN_GO[0]}.{MIN_GO[1]} or newer (Debian: the golang package of that version, or "
            "the go.dev tarball), or set LIVEKIT_SERVER_BIN to a livekit-server binary "
            f"({VERSION}); the demo falls back to the dev server without it."
        )
    if found < MIN_GO:
        raise InstallError(
            f"Go {found[0]}.{found[1]} is too old for livekit-server {VERSION} "
            f"(it needs {MIN_GO[0]}.{MIN_GO[1]}); install a newer Go or set LIVEKIT_SERVER_BIN."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(
        f"building the official LiveKit server {VERSION} with go install "
        "(once; a first build takes several minutes)"
    )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="build-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "GOTOOLCHAIN": "local"}
        env.pop("GOFLAGS", None)
        result = subprocess.run(
            ["go", "install", f"{MODULE}/cmd/server@{VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise InstallError(f"go install of {MODULE}@{VERSION} failed:\n{tail}")
        built = Path(gobin) / "server"
        check = subprocess.run(
            [str(built), "--version"], capture_output=True, text=True, check=False, timeout=60
        )
        if VERSION.lstrip("v") not in check.stdout + check.stderr:
            raise InstallError(f"the built server does not report {VERSION}: {check.stdout!r}")
        os.replace(built, target)  # atomic: a half-built binary is never found
    progress(f"official LiveKit server {VERSION} installed at {target}")
    return target
