"""An SDK client in its own process, so a test can kill or freeze it.

``python -m tests.e2e.devserver.client_process URL TOKEN``: connects, publishes a tone,
prints ``connected`` and keeps going until it is stopped.
"""

from __future__ import annotations

import asyncio
import sys

from livekit import rtc

from .helpers import play_forever, publish_audio


async def main(url: str, token: str) -> None:
    room = rtc.Room()
    await room.connect(url, token)
    source, _, _ = await publish_audio(room)
    print("connected", flush=True)
    await play_forever(source)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
