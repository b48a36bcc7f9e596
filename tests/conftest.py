"""Store-wide test configuration. Area fixtures live in each folder's conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO_ROOT / "assets" / "eval"


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    """The public speech evaluation set shipped with the repo (see assets/eval/README.md)."""
    return EVAL_DIR
