"""The speech pipeline: audio in, captions out. No LiveKit, no database.

Synchronous stages, testable with numpy arrays:

* ``vad.py``: Silero VAD and the utterance ``Segmenter`` (utterance events; ``EndReason`` is
  why an utterance ended);
* ``asr.py``: ``WhisperRecognizer`` (faster-whisper), ``agreement.py``: stable partial words;
* ``audio.py``: reading and resampling files; ``models.py``: finding the model weights;
* ``types.py``: the values that flow: ``Caption``, ``Word``, ``Speaker``, ``SpokenCaption``;
* ``usage.py``: ``UsageMeter``, cumulative counts in, checkpoint increments out (pure).

The async parts, which own the tasks and the bounded queues:

* ``scheduler.py``: one executor thread for decodes, bounded finals, partials thinned out;
* ``engine.py``: ``SpeechEngine`` (one per process) and a ``StreamTranscriber`` per track;
* ``track.py``: ``TrackPipeline``, one track from its ``AudioSource`` to its ``CaptionSink``s
  (persistence first, then the room through ``outbox.py``'s ``CaptionOutbox``), in one task
  group; a failure ends that track's pipeline only.
"""
