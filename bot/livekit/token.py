"""The bot's join token."""

from __future__ import annotations

from datetime import timedelta

import livekit.api as lkapi

from bot.config import BotSettings


def agent_token(settings: BotSettings, room_name: str) -> str:
    """A join token of kind ``agent``: hidden, subscribes, publishes data only."""
    grants = lkapi.VideoGrants(
        room_join=True,
        room=room_name,
        hidden=True,
        can_subscribe=True,
        can_publish=False,
        can_publish_data=True,
        agent=True,
    )
    return (
        lkapi.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        .with_identity(settings.bot_identity)
        .with_name(settings.bot_name)
        .with_kind("agent")
        .with_grants(grants)
        .with_ttl(timedelta(hours=12))
        .to_jwt()
    )
