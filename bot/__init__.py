"""The transcription bot: speech pipeline (``bot.pipeline``) and LiveKit worker."""
