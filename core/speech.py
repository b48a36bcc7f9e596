"""Speech settings the API validates and the bot applies: Whisper's languages, the models a
session may choose (``ASR_MODELS``).

A session's language is ``None`` (detected per utterance) or a code whose primary subtag is one
of :data:`WHISPER_LANGUAGES` (``ru``, ``en-US``...); the decoder gets the primary subtag.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WHISPER_LANGUAGES", "ModelChoiceSettings", "whisper_language"]

# faster_whisper.tokenizer._LANGUAGE_CODES (Whisper's language tokens), kept here so the API
# validates without importing the speech stack.
WHISPER_LANGUAGES: Final = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "zh",
        "yue",
    ]
)


def whisper_language(code: str | None) -> str | None:
    """The Whisper language of a session's ``language`` (``en-US`` -> ``en``); None for
    automatic detection (``None``, empty or ``auto``). ``ValueError`` for a code Whisper does
    not know."""
    if code is None or code.strip().lower() in ("", "auto"):
        return None
    primary = code.strip().split("-", 1)[0].lower()
    if primary not in WHISPER_LANGUAGES:
        raise ValueError(f"unsupported language {code!r}: use a Whisper language code or auto")
    return primary


class ModelChoiceSettings(BaseSettings):
    """``ASR_MODELS``: the Whisper models a session may ask for, comma-separated. The API
    refuses any other name; the bot loads a listed model the first time a track needs it (its
    own ``ASR_MODEL`` is always available). List only models every worker has installed."""

    model_config = SettingsConfigDict(extra="ignore")

    asr_models: str = Field(default="base,tiny.en")

    def allowed_models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.strip() for m in self.asr_models.split(",") if m.strip()))
