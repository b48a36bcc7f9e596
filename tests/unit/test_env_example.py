"""Every setting any process reads is documented in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from bot.config import BotSettings
from store.settings import DatabaseSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def documented() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))


@pytest.mark.parametrize("settings", [BotSettings, ApiSettings, DatabaseSettings])
def test_every_setting_is_in_env_example(settings: type[BaseSettings]) -> None:
    missing = {name.upper() for name in settings.model_fields} - documented()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def example_values() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))


def _shown(value: object) -> str:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


@pytest.mark.parametrize("settings", [BotSettings, ApiSettings, DatabaseSettings])
def test_defaults_are_as_documented(settings: type[BaseSettings]) -> None:
    """A value written in .env.example is the default of every process that reads it (an empty
    one means "unset", and its comment says what each process does then)."""
    values = example_values()
    wrong = {}
    for name, field in settings.model_fields.items():
        documented_value = values.get(name.upper(), "")
        if documented_value and field.default is not None:
            actual = _shown(field.default)
            try:
                same = float(actual) == float(documented_value)
            except ValueError:
                same = actual == documented_value
            if not same:
                wrong[name.upper()] = (documented_value, actual)
        elif documented_value and field.default is None and field.default_factory is None:
            wrong[name.upper()] = (documented_value, None)
    assert not wrong, f".env.example shows another default than the code: {wrong}"
