"""What tests/deploy checks deploy/ with, and where it comes from (scripts/test-deps.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
# where scripts/test-deps.sh puts the tools (DEPLOY_TOOLS_DIR moves them, for both)
TOOLS = Path(os.environ.get("DEPLOY_TOOLS_DIR") or REPO_ROOT / ".cache" / "deploy-tools")
INSTALL_HINT = "run `make test-deps` (scripts/test-deps.sh)"


def compose_command() -> list[str]:
    """`docker compose`, or the plugin binary scripts/test-deps.sh builds from its Go module."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    built = TOOLS / "bin" / "docker-compose"
    if built.is_file():
        return [str(built)]
    pytest.fail(
        "the Docker Compose plugin is missing (`docker compose` does not work): "
        f"{INSTALL_HINT}, which builds it with Go (go mod download "
        "github.com/docker/compose/v2@v2.40.3, then go build ./cmd) into "
        ".cache/deploy-tools/bin/docker-compose; or install Docker's docker-compose-plugin"
    )


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: {INSTALL_HINT} (Debian: apt-get install {package})")
    return found


def exported_metrics() -> set[str]:
    """Every series name the API and the bot export, read from their metric definitions.

    Counters get ``_total``, histograms ``_bucket``/``_sum``/``_count`` (prometheus_client's
    naming); the bot's default registry adds ``process_*`` and ``python_*``.
    """
    names: set[str] = set()
    for source in (REPO_ROOT / "api" / "metrics.py", REPO_ROOT / "bot" / "metrics.py"):
        text = source.read_text()
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram)\(\s*\"([a-z_:]+)\"", text):
            if kind == "Counter":
                base = name.removesuffix("_total")
                names |= {f"{base}_total", f"{base}_created"}
            elif kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            else:
                names.add(name)
    return names
