"""core.speech: the language list the API validates with is Whisper's own."""

from __future__ import annotations

import pytest
from faster_whisper.tokenizer import _LANGUAGE_CODES

from core.speech import WHISPER_LANGUAGES, ModelChoiceSettings, whisper_language


def test_the_language_list_is_whispers() -> None:
    assert frozenset(_LANGUAGE_CODES) == WHISPER_LANGUAGES


@pytest.mark.parametrize(
    ("code", "spoken"),
    [(None, None), ("auto", None), ("", None), ("ru", "ru"), ("en-US", "en"), ("RU", "ru")],
)
def test_whisper_language(code: str | None, spoken: str | None) -> None:
    assert whisper_language(code) == spoken


@pytest.mark.parametrize("code", ["xx", "qq-RU", "english"])
def test_unknown_languages_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        whisper_language(code)


def test_allowed_models_is_a_clean_list() -> None:
    settings = ModelChoiceSettings(asr_models=" base, tiny.en ,,base")
    assert settings.allowed_models() == ("base", "tiny.en")
