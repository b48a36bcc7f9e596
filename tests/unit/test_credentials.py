"""Weak and well-known secrets: every process that takes one refuses to start with it, unless
development mode is on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.credentials import DEV_MODE_VAR, bearer_matches, secret_problem, secret_problems

REPO_ROOT = Path(__file__).resolve().parents[2]
STRONG = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c"  # 32 random hex characters


@pytest.mark.parametrize(
    "value",
    ["a", "x", "devkey", "secret", "Secret", "changeme", "admin", "short-but-random-7f3a",
     "a" * 40, "0101010101010101010101010101010101"],
)  # fmt: skip
def test_weak_and_default_secrets_are_refused(value: str) -> None:
    assert secret_problem(value) is not None


def test_the_placeholders_deploy_env_example_ships_are_refused() -> None:
    text = (REPO_ROOT / "deploy" / ".env.example").read_text()
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    for name in ("LIVEKIT_API_SECRET", "API_ADMIN_KEY", "API_JWT_SECRET"):
        assert len(values[name]) >= 32  # long enough: only the placeholder rule catches them
        assert secret_problem(values[name]) == "is an example placeholder", name


def test_random_secrets_pass_and_problems_name_the_setting_not_the_value() -> None:
    assert secret_problem(STRONG) is None
    (line,) = secret_problems({"API_ADMIN_KEY": "x", "API_JWT_SECRET": STRONG}, dev_mode=False)
    assert line.startswith("API_ADMIN_KEY is shorter than 32 bytes") and "'x'" not in line
    assert secret_problems({"API_ADMIN_KEY": "x"}, dev_mode=True) == []
    assert secret_problems({"METRICS_TOKEN": None}, dev_mode=False) == []


def test_bearer_matches() -> None:
    assert bearer_matches(f"Bearer {STRONG}", STRONG)
    assert bearer_matches(f"bearer {STRONG}", STRONG)
    assert not bearer_matches(STRONG, STRONG)
    assert not bearer_matches("Bearer nope", STRONG)
    assert not bearer_matches(None, STRONG)


def _run(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != DEV_MODE_VAR and not k.startswith(
        ("API_", "LIVEKIT_", "METRICS_"))}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT, env=base | env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"API_JWT_SECRET": "a", "API_ADMIN_KEY": STRONG}, "API_JWT_SECRET"),
        ({"API_ADMIN_KEY": "x"}, "API_ADMIN_KEY"),
        ({"API_ADMIN_KEY": STRONG, "LIVEKIT_API_SECRET": "secret"}, "LIVEKIT_API_SECRET"),
        ({"API_ADMIN_KEY": STRONG, "METRICS_TOKEN": "metrics"}, "METRICS_TOKEN"),
    ],
)
def test_api_refuses_to_start_with_a_weak_secret(env: dict[str, str], named: str) -> None:
    # the database is never reached: the URL points nowhere
    result = _run("api", env | {"DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1:1/none"})
    assert result.returncode == 2, result.stderr
    assert f"transcriber api: {named} " in result.stderr
    assert DEV_MODE_VAR in result.stderr


def test_bot_refuses_livekits_development_pair() -> None:
    result = _run("bot", {"DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1:1/none"})
    assert result.returncode == 2
    assert "transcriber bot: LIVEKIT_API_SECRET is a well-known default" in result.stderr


def test_devserver_refuses_the_dev_pair_without_dev_mode() -> None:
    result = _run("devserver", {}, "--port", "0")
    assert result.returncode == 2
    assert "devserver: LIVEKIT_API_SECRET is a well-known default" in result.stderr
    assert "--dev" in result.stderr
