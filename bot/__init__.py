"""The transcription bot: a worker that joins LiveKit rooms and captions every microphone.

Data flows one way, and each stage knows only the next:

    LiveKit track --(bot.livekit: LiveKitAudioSource)--> AudioSource
      -> bot.pipeline.track.TrackPipeline (VAD + streaming Whisper, its own task group)
      -> CaptionSinks: bot.recording.CaptionRecorder (finals -> spool -> Postgres), then
         the room (bot.livekit.captions.RoomCaptionPublisher, behind a bounded outbox)
      -> usage counts -> bot.pipeline.usage.UsageMeter -> SessionRecorder -> UsageCheckpoint

Where things live:

* ``pipeline/``: the speech pipeline, no LiveKit and no database: VAD and segmenter, streaming
  ASR and its decode scheduler, the per-stream engine, the per-track pipeline and its
  Protocols (``AudioSource``, ``CaptionSink``), the caption outbox and the usage meter.
* ``livekit/``: the only code that imports ``livekit.rtc``: joining a room with retry
  (``RoomAgent``), track events, when to leave (``presence``), the audio source, caption
  publishing and the agent token.
* ``transcription.py``: what the bot does with a room's tracks (admission, pipeline, sinks).
* ``recording.py``: what it writes: participants, finals (through ``spool.py``), usage.
* ``worker.py``: claims jobs, holds their leases, runs one room per job, drains on SIGTERM;
  it composes the pieces above through their constructors.
* ``config.py`` (settings, ``build_engine``), ``metrics.py``, ``errors.py``, ``__main__.py``.
* Tooling: ``cli.py``, ``transcribe_cli.py`` (files), ``evaluation.py``, ``formats.py``,
  ``demo.py`` and ``simulate.py`` (fake participants that publish audio, so they use
  ``livekit.rtc`` themselves).
"""
