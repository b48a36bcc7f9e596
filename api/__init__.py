"""HTTP API: sessions, LiveKit tokens and webhooks, transcripts, usage and cost."""
