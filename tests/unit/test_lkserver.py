"""The official LiveKit server in the toolchain: the install's messages and the generated config."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

import lkserver
from lkserver import InstallError, ServerConfig
from lkserver.__main__ import main


def test_without_go_install_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIVEKIT_SERVER_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no go anywhere
    monkeypatch.delenv("LIVEKIT_SERVER_BIN", raising=False)
    with pytest.raises(InstallError, match=r"Go is not installed.*LIVEKIT_SERVER_BIN"):
        lkserver.install(progress=lambda _: None)
    assert main(["install"]) == 1
    assert "Go is not installed" in capsys.readouterr().err
    assert main(["path"]) == 1
    assert main(["frobnicate"]) == 2


def test_a_too_old_go_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_go = bin_dir / "go"
    fake_go.write_text("#!/bin/sh\necho go1.21.4\n")
    fake_go.chmod(fake_go.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("LIVEKIT_SERVER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InstallError, match=r"Go 1\.21 is too old"):
        lkserver.install(progress=lambda _: None)
    assert not lkserver.go_available()


def test_an_installed_binary_is_found_and_not_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIVEKIT_SERVER_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("LIVEKIT_SERVER_BIN", raising=False)
    assert lkserver.find_binary() is None
    binary = lkserver.binary_path()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert lkserver.find_binary() == binary
    assert lkserver.install(progress=lambda _: None) == binary  # no Go needed


def test_livekit_server_bin_must_be_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIVEKIT_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(InstallError, match="not an executable file"):
        lkserver.find_binary()


def test_config_binds_and_advertises_one_address_and_signs_webhooks() -> None:
    config = ServerConfig.on(
        "10.213.0.2",
        api_key="key",
        api_secret="s" * 32,
        node=1,
        webhook_urls=["http://10.213.0.1:8080/webhooks/livekit"],
        redis_address="10.213.0.2:6379",
        extra={"region": "a"},
    )
    doc = json.loads(json.dumps(config.document()))  # what the server reads (JSON is YAML)
    assert doc["bind_addresses"] == ["10.213.0.2"]
    rtc = doc["rtc"]
    assert rtc["use_external_ip"] is False, "no STUN look-up of a public address"
    assert rtc["node_ip"] == "10.213.0.2"
    assert rtc["ips"] == {"includes": ["10.213.0.2/32"]}
    assert (rtc["port_range_start"], rtc["port_range_end"]) == (51_000, 51_999)
    assert doc["keys"] == {"key": "s" * 32}
    assert doc["webhook"] == {"api_key": "key", "urls": ["http://10.213.0.1:8080/webhooks/livekit"]}
    assert doc["redis"] == {"address": "10.213.0.2:6379"}
    assert doc["region"] == "a"
    assert config.port != config.rtc_tcp_port


def test_launcher_refuses_without_a_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEKIT_SERVER_CACHE", str(tmp_path))
    monkeypatch.delenv("LIVEKIT_SERVER_BIN", raising=False)
    config = ServerConfig.on("127.0.0.1", api_key="k", api_secret="s" * 32)
    with pytest.raises(InstallError, match="make livekit-server"):
        lkserver.OfficialServerProcess(config)
