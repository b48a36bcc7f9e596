"""The LiveKit edge: the only part of the bot that imports ``livekit.rtc``.

* ``room.py``: ``RoomAgent`` joins a room as a hidden agent (with retry; ``rtc.ConnectError``
  becomes ``LiveKitUnavailable`` here), turns SDK events into calls of its ``RoomListener``
  (participants joined and left, a track to transcribe, a track's audio closed to stop it).
* ``presence.py``: who is in the room and when to leave it (``LeaveReason``).
* ``audio.py``: ``LiveKitAudioSource``, a subscribed track as 16 kHz float32 frames (bounded:
  the SDK's stream drops the oldest audio past ``audio_queue_s``).
* ``captions.py``: ``RoomCaptionPublisher``, a ``CaptionSink`` that sends each caption in the
  three forms LiveKit clients read.
* ``token.py``: the bot's join token (kind ``agent``).

Nothing here knows about the database or the speech models: tracks go out to the listener,
captions come in to the publisher.
"""
