"""Every setting any process reads is documented in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from api.db.settings import DatabaseSettings
from api.settings import ApiSettings
from bot.config import BotSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def documented() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))


@pytest.mark.parametrize("settings", [BotSettings, ApiSettings, DatabaseSettings])
def test_every_setting_is_in_env_example(settings: type[BaseSettings]) -> None:
    missing = {name.upper() for name in settings.model_fields} - documented()
    assert not missing, f"add to .env.example: {sorted(missing)}"
