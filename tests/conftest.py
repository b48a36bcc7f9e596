"""Store-wide test configuration. Area fixtures live in each folder's conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.credentials import DEV_MODE_VAR

# Test servers (dev server, API, bot subprocesses) run with fixed, short test secrets: development
# mode accepts them. Tests of the refusal itself remove the variable from the child's environment.
os.environ[DEV_MODE_VAR] = "1"

REPO_ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO_ROOT / "assets" / "eval"


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    """The public speech evaluation set shipped with the repo (see assets/eval/README.md)."""
    return EVAL_DIR
