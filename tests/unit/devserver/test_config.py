"""Configuration from the environment and the command line."""

from __future__ import annotations

import pytest

from devserver.config import DevServerConfig
from devserver.errors import ConfigError


def test_defaults_match_livekit_server_dev() -> None:
    config = DevServerConfig()
    assert (config.port, config.api_key, config.api_secret) == (7880, "devkey", "secret")
    assert config.single_peer_connection and config.auto_create_rooms


def test_environment_then_flags() -> None:
    env = {
        "LIVEKIT_API_KEY": "k",
        "LIVEKIT_API_SECRET": "s",
        "DEVSERVER_BIND": "10.0.0.1",
        "DEVSERVER_PORT": "7000",
        "DEVSERVER_WEBHOOK_URLS": "http://a/hook, http://b/hook",
        "DEVSERVER_EMPTY_TIMEOUT": "30",
        "DEVSERVER_DEPARTURE_TIMEOUT": "2.5",
        "DEVSERVER_SINGLE_PEER_CONNECTION": "false",
        "DEVSERVER_PING_INTERVAL": "2",
        "DEVSERVER_PING_TIMEOUT": "6",
    }
    config = DevServerConfig.from_env(env)
    assert (config.api_key, config.api_secret, config.bind, config.port) == (
        "k",
        "s",
        "10.0.0.1",
        7000,
    )
    assert config.webhook_urls == ("http://a/hook", "http://b/hook")
    assert (config.empty_timeout_s, config.departure_timeout_s) == (30.0, 2.5)
    assert not config.single_peer_connection
    assert (config.ping_interval_s, config.ping_timeout_s) == (2, 6)

    flagged = config.with_args(
        ["--port", "0", "--webhook-url", "http://c/hook", "--no-auto-create-rooms"]
    )
    assert flagged.port == 0 and flagged.webhook_urls == ("http://c/hook",)
    assert not flagged.auto_create_rooms and flagged.bind == "10.0.0.1"


@pytest.mark.parametrize(
    "env",
    [
        {"DEVSERVER_PORT": "x"},
        {"DEVSERVER_PORT": "70000"},
        {"DEVSERVER_WEBHOOK_URLS": "ftp://nope"},
        {"DEVSERVER_PING_INTERVAL": "0"},
        {"DEVSERVER_PING_INTERVAL": "5", "DEVSERVER_PING_TIMEOUT": "5"},
        {"DEVSERVER_SINGLE_PEER_CONNECTION": "maybe"},
        {"DEVSERVER_EMPTY_TIMEOUT": "-1"},
    ],
)
def test_invalid_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        DevServerConfig.from_env(env)
