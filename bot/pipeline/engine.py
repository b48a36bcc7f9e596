"""The streaming engine: 16 kHz audio in, partial and final captions out, per stream.

``SpeechEngine`` owns the process's one VAD session, one Whisper model and the decode
scheduler. ``engine.open_stream()`` gives a ``StreamTranscriber`` per audio track:

    stream = engine.open_stream("alice-mic")
    await stream.push_audio(samples)        # float32, 16 kHz mono, any chunk size
    await stream.end_input()                # closes the open utterance
    async for caption in stream.captions(): ...

Data flows one way: ``push_audio`` runs the segmenter (cheap, synchronous), asks the scheduler
for partial decodes every ``partial_interval_ms`` of new speech and a final decode when an
utterance ends; an emitter task turns decode results into captions, in order, on a bounded
queue. A decode error costs one utterance (counted), never the stream.

**Speculative finals.** The final decode starts when the segmenter reports a pause whose audio
would be the whole utterance (``UtterancePaused``, about 100 ms into the silence), not when
``min_silence_ms`` has made the end certain. If the pause does end the utterance, that decode
is its final: the same audio, so the same text, about 0.25 s sooner (``bench/engine.py``).
If speech resumes, a decode not yet started is withdrawn and one already running is shown as a
partial, so little is spent for nothing.

**Phrase finals.** In continuous speech the VAD may not end an utterance for many seconds
(a reader's 0.5 s pauses hold only 100-350 ms of VAD silence), so its words waited for the
end. A pause of at least ``phrase_min_pause_ms`` after at least ``phrase_min_ms`` of the
utterance keeps its speculative decode (the audio up to the pause) as a phrase candidate.
When a later partial, which decoded ``phrase_context_ms`` or more past the pause, starts with
exactly the candidate's words and goes on (LocalAgreement-2 of the phrase decoded alone and
in context), the candidate is committed: it becomes the final of the utterance (its audio ends
at the pause, so no word is cut) and the rest of the speech continues as a new utterance.
A phrase whose words the following speech changes ("is not" alone, "ask not what" in context)
is not committed, and waits for the utterance's end as before. Measured earlier (two runs,
load 2-3.5): phrase-level final p50 1.9 -> 1.6 s, p95 6.6 / 6.4 -> 5.7 / 4.4 s.

That check is not enough on its own: the partial that confirms a candidate decodes the speech
after it from the same start, so a short phrase heard wrong alone can be heard the same wrong
way in context. Through a room, "And so my fellow Americans" (2.3 s) was committed at JFK's
1.05 s pause, and "ask not" (1 s of speech, then a 0.55 s pause) was committed alone as "is
not." The product therefore sets ``phrase_min_ms`` to the short-utterance length
(``VAD_SHORT_UTTERANCE_S``, 3 s; ``PHRASE_MIN_MS`` overrides it): a phrase that rule would keep
with its neighbour is never committed alone, at a pause or at a word cut
(tests/integration/engine/test_room_audio.py). It costs latency where lines are short:
measured on the sonnets (``bench.engine --sections phrase``, quiet machine, load 1.3-1.6, two
runs, each value run 1 / run 2): final p95 with phrase finals off 5.68 / 5.81 s, minimum 3 s
5.54 / 5.15 s, minimum 1 s 3.59 / 3.69 s (p50 1.5-1.7 s in all three); WER of finals on
sonnet 1 0.185 / 0.185, 0.139 / 0.157, 0.157 / 0.167, on sonnets 1-3 0.111 / 0.111, 0.094 /
0.097, 0.111 / 0.123. Fewer, longer phrases are decoded better; ``PHRASE_MIN_MS=1000`` is the
choice for text that settles sooner.

**Word cuts.** A pause under ``phrase_min_pause_ms`` of VAD silence (or none) made no candidate.
So partials past ``phrase_min_ms`` also ask for word times, and when two consecutive partials
agree on the words (LocalAgreement-2) up to one that ends a clause (Whisper's punctuation,
``die,`` / ``memory.``), at least ``phrase_context_ms`` before the decoded end, and the VAD's
speech probability dips under ``phrase_cut_max_prob`` between that word's middle and the next
one's, those words are committed as a final, cut at the dip's quietest window: no extra
decode, the text was decoded in context. Gaps between word timestamps were tried first: the
aligner gives none (each word lasts until the next starts; a pause sits inside the punctuated
word, "increase," 1.58-2.76 s), while at line ends of the sonnets the VAD dips to 0.01-0.2
against 0.8-1.0 inside phrases. Measured (``python -m bench.engine --sections phrase``, the
long sonnet items; phrase finals off and on alternate in one run, so each run has its own
"off"; the machine was shared, 1-min load in brackets), final p50 / p95 in s, off -> on:
today's VAD pauses only: 3.73 / 8.68 -> 2.89 / 10.36 (load 7.8, 4 committed) and 2.16 / 6.34
-> 1.70 / 5.61 (load 4.5, 16); with word cuts: 3.91 / 7.58 -> 3.66 / 7.91 (load 9.6, 10 of
them 3 at words), 3.35 / 7.64 -> 2.38 / 6.95 (load 8.4, 13 / 3), 1.72 / 5.98 -> 1.66 / 3.86
(load 3.9, 23 / 7; max 4.25 s). The p95 <= 2 s goal is not reached. WER of finals (lockstep
feed, deterministic; sonnet 1 / sonnets 1-3 vs the text): off 0.157 / 0.097, VAD pauses only
0.130 / 0.111, word cuts too 0.139 / 0.114. What still waits: phrases whose first words later
partials keep revising after a cut mid-line ("Feed'st" / "Feeds" / "feats"): no agreement
forms, so the next cut waits for the VAD.

**Phrase prompts** (``phrase_prompt``, off by default). A cut takes the words before it out of
the audio Whisper sees, so the speech after it can be decoded with them as Whisper's
previous-text prompt (the run's committed text, bounded). Measured on a quiet machine (load
1.1-1.4, two runs, phrase finals with word cuts, prompt on vs off): final p50 1.51 / 1.51 vs
1.44 / 1.36 s, p95 3.80 / 3.68 vs 3.58 / 3.67 s; WER of finals sonnet 1 0.139 / 0.139 vs
0.157 / 0.167, sonnets 1-3 0.117 / 0.105 vs 0.111 / 0.111. The context steadies the words a
little but does not make later partials agree sooner, and the longer prompt costs decode time.
``ASR_CONDITION_ON_PREVIOUS`` prompts every utterance with the stream's latest final instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from bot.pipeline.agreement import StablePrefix, word_key
from bot.pipeline.asr import DecodeRequest, Hypothesis, RecognizedWord, compression_ratio
from bot.pipeline.scheduler import DecodeScheduler, Recognizer
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption, Word
from bot.pipeline.vad import (
    Float32Array,
    Segmenter,
    SegmenterOptions,
    SegmentEvent,
    SileroVad,
    UtteranceEnded,
    UtterancePaused,
    UtteranceResumed,
    UtteranceStarted,
)
from core.errors import AsrError

logger = logging.getLogger("bot.pipeline")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    emit_partials: bool = True
    partial_interval_ms: int = 600
    # No partial decode before the utterance holds this much audio (pre-roll included).
    min_partial_audio_ms: int = 800
    agreement: int = 2
    caption_queue_size: int = 256
    # Decodes waiting for the emitter, in order. It falls behind only when the captions'
    # consumer does (the caption queue is full of finals); then partials are not requested
    # and a final waits here, which holds up ``push_audio``: the stream's audio source is
    # where the overload policy (drop the oldest audio) applies.
    pending_queue_size: int = 64
    # Start the final decode at the pause (see the module docstring); off: at the certain end.
    speculative_finals: bool = True
    # Early finals: once a pause has lasted this long, the speculative decode is published as
    # the utterance's final, before the VAD is sure the utterance ended (0: off). If speech
    # resumes, the utterance's later final has the same id and replaces it (clients and the
    # store key finals on it); if the pause does end it, nothing more is sent.
    early_final_ms: int = 0
    # Commit finals at pauses inside long utterances (see the module docstring).
    phrase_finals: bool = True
    phrase_min_pause_ms: int = 192
    phrase_min_ms: int = 1000
    phrase_context_ms: int = 400
    # Also commit at punctuation that two consecutive partials agree on, where the VAD heard
    # a dip under ``phrase_cut_max_prob`` (see the module docstring).
    phrase_word_cuts: bool = True
    phrase_cut_max_prob: float = 0.2
    # Words of the agreed prefix the two partials may spell differently ("Feed'st" / "Feeds")
    # before a word cut (the later partial's spelling is committed); the cut's own word must
    # match. 0: LocalAgreement-2 exactly.
    phrase_cut_tolerance: int = 0
    # Decode the speech that goes on after a phrase final with the committed text as Whisper's
    # previous-text prompt (see the module docstring): the same speech, so the same context.
    phrase_prompt: bool = False
    # Prompt every utterance with the stream's latest final (Whisper's condition on previous
    # text; off: an utterance after a real pause is decoded alone, no text carried over).
    condition_on_previous: bool = False
    # A stream's own speech settings (a session's): the language every decode of the stream
    # uses (None: the recognizer's configured one, else detected per utterance), and its
    # vocabulary (None: the recognizer's configured hotwords / initial prompt).
    language: str | None = None
    hotwords: str | None = None
    initial_prompt: str | None = None


@dataclass(slots=True)
class StreamStats:
    """Usage of one stream: what metering and billing read."""

    audio_s: float = 0.0
    speech_s: float = 0.0
    partials: int = 0
    finals: int = 0
    errors: int = 0
    dropped_captions: int = 0
    # Final decodes started at a pause, and how many of them became the utterance's final.
    speculative_finals: int = 0
    speculative_finals_used: int = 0
    # Finals committed at a pause inside an utterance (phrase finals), and how many of them
    # at agreed words before a VAD dip (word cuts) rather than at a pause the VAD reported.
    phrase_finals: int = 0
    word_cut_finals: int = 0
    # Early finals published at a pause (a later final of the same utterance may replace one).
    early_finals: int = 0


@dataclass(frozen=True, slots=True)
class _Speculation:
    """A final decode started at a pause of utterance ``index``, its audio ending at
    ``end_sample``."""

    index: int
    end_sample: int
    future: asyncio.Future[Hypothesis | None]
    # Queued as a partial at the pause already (a short utterance waits long for its end).
    shown: bool = False
    # Queued as an early final (``StreamOptions.early_final_ms``).
    published: bool = False


@dataclass(frozen=True, slots=True)
class _Phrase:
    """A decode of the open utterance up to a pause (``end_sample``): a phrase final if the
    speech after the pause confirms its words."""

    index: int
    end_sample: int
    future: asyncio.Future[Hypothesis | None]


@dataclass(frozen=True, slots=True)
class _WordCut:
    """Words of utterance ``index`` (which started at ``start_sample``) that two consecutive
    partials agree on, to commit as a final ending at ``cut_sample``."""

    index: int
    start_sample: int
    cut_sample: int
    hypothesis: Hypothesis


@dataclass(slots=True)
class _Pending:
    """A decode whose result the emitter turns into a caption, in submission order."""

    utterance_id: str
    start_sample: int
    future: asyncio.Future[Hypothesis | None]
    final: bool
    end_sample: int = 0
    early: bool = False  # an early final: the utterance's final, unless a later one replaces it


class SpeechEngine:
    """One per process: shared models and scheduler; many streams."""

    def __init__(
        self,
        recognizer: Recognizer,
        vad: SileroVad,
        *,
        stream_options: StreamOptions | None = None,
        max_pending_finals: int = 32,
        max_batch: int = 4,
        max_partial_batch: int = 1,
        decode_workers: int = 1,
    ) -> None:
        self.recognizer = recognizer
        self.vad = vad
        self.stream_options = stream_options or StreamOptions()
        self.scheduler = DecodeScheduler(
            recognizer,
            max_pending_finals=max_pending_finals,
            max_batch=max_batch,
            max_partial_batch=max_partial_batch,
            workers=decode_workers,
        )
        # The streams inside an utterance right now (VAD says speech), by stream key.
        self._speaking: set[str] = set()

    @property
    def speaking_streams(self) -> int:
        """How many streams are inside an utterance now (``transcriber_speaking_streams``)."""
        return len(self._speaking)

    def _set_speaking(self, key: str, speaking: bool) -> None:
        if speaking:
            self._speaking.add(key)
        else:
            self._speaking.discard(key)

    def open_stream(
        self, name: str | None = None, *, options: StreamOptions | None = None
    ) -> StreamTranscriber:
        return StreamTranscriber(self, name or secrets.token_hex(4), options or self.stream_options)

    async def aclose(self) -> None:
        self._speaking.clear()
        await self.scheduler.aclose()


class StreamTranscriber:
    """Captions for one audio stream (one participant's microphone track)."""

    def __init__(self, engine: SpeechEngine, name: str, options: StreamOptions) -> None:
        self.name = name
        self.options = options
        self.stats = StreamStats()
        self._engine = engine
        self._scheduler = engine.scheduler
        self._segmenter = Segmenter(engine.vad.stream(), options.segmenter)
        # Utterance ids are unique across restarts: a random nonce per stream instance.
        self._nonce = secrets.token_hex(4)
        self._key = f"{name}:{self._nonce}"
        self._pending: asyncio.Queue[_Pending | None] = asyncio.Queue(options.pending_queue_size)
        self._captions: asyncio.Queue[Caption | None] = asyncio.Queue(options.caption_queue_size)
        self._emitter: asyncio.Task[None] | None = None
        self._partial_in_flight = False
        self._speculation: _Speculation | None = None
        self._phrases: list[_Phrase] = []  # candidates in the open utterance, oldest first
        self._confirmed: _Phrase | None = None  # a candidate to commit at the next push
        # The latest partial's words (utterance index, start sample, words), and a word cut to
        # commit at the next push.
        self._last_words: tuple[int, int, tuple[RecognizedWord, ...]] | None = None
        self._word_cut: _WordCut | None = None
        self._last_partial_at = 0  # utterance samples when the last partial was requested
        self._utterance_id = ""
        self._utterance_language: str | None = None
        self._ended = False
        self._interval = options.partial_interval_ms * SAMPLE_RATE_HZ // 1000
        self._min_partial = options.min_partial_audio_ms * SAMPLE_RATE_HZ // 1000
        self._phrase_min = options.phrase_min_ms * SAMPLE_RATE_HZ // 1000
        self._phrase_context = options.phrase_context_ms * SAMPLE_RATE_HZ // 1000
        self._word_cuts = options.phrase_finals and options.phrase_word_cuts
        # The text committed so far in the current run of phrase finals, and the utterance
        # (the speech after the last of them) that it prompts.
        self._carried: tuple[int, str] | None = None
        self._last_final_text = ""  # the latest final the emitter sent (condition on previous)

    def _utterance_name(self, index: int) -> str:
        return f"SG_{self._nonce}_{index}"

    # -- input ----------------------------------------------------------------------------------
    async def push_audio(self, samples: Float32Array) -> None:
        """Feed 16 kHz mono float32 audio. Waits only when finals are backed up."""
        if self._ended:
            raise RuntimeError("push_audio after end_input")
        self._ensure_emitter()
        self.stats.audio_s += len(samples) / SAMPLE_RATE_HZ
        for event in self._segmenter.push(samples):
            await self._on_event(event)
        await self._maybe_commit_phrase()
        self._maybe_early_final()
        self._maybe_partial()

    async def end_input(self) -> None:
        """No more audio: finish the open utterance. Captions still drain afterwards."""
        if self._ended:
            return
        self._ensure_emitter()
        for event in self._segmenter.flush():
            await self._on_event(event)
        self._ended = True
        await self._enqueue(None)

    async def captions(self) -> AsyncIterator[Caption]:
        """Captions in order; ends after ``end_input`` once everything is decoded."""
        self._ensure_emitter()
        while True:
            caption = await self._captions.get()
            if caption is None:
                return
            yield caption

    async def aclose(self) -> None:
        """Stop now: pending decodes are abandoned (use ``end_input`` to finish them)."""
        self._ended = True
        self._engine._set_speaking(self._key, False)
        if self._speculation is not None:
            self._speculation.future.cancel()
            self._speculation = None
        for phrase in self._phrases:
            phrase.future.cancel()
        self._phrases, self._confirmed, self._word_cut = [], None, None
        if self._emitter is not None:
            self._emitter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._emitter
        while not self._pending.empty():
            item = self._pending.get_nowait()
            if item is not None:
                item.future.cancel()

    # -- segmentation events ----------------------------------------------------------------------
    async def _on_event(self, event: SegmentEvent) -> None:
        if not isinstance(event, (UtterancePaused, UtteranceResumed)):
            self._drop_phrases()  # the utterance they belong to is over
        if isinstance(event, UtteranceStarted):
            self._utterance_id = self._utterance_name(event.index)
            self._utterance_language = None
            self._last_partial_at = 0
            self._engine._set_speaking(self._key, True)
        elif isinstance(event, UtterancePaused):
            if self.options.speculative_finals:
                future = await self._scheduler.submit_final(self._key, self._final_request(event))
                shown = self._segmenter.awaits_long_pause and self._show_as_partial(
                    future, event.end_sample
                )
                self._speculation = _Speculation(event.index, event.end_sample, future, shown)
                self.stats.speculative_finals += 1
        elif isinstance(event, UtteranceResumed):
            self._resume(event)
        elif isinstance(event, UtteranceEnded):
            self._engine._set_speaking(self._key, False)
            self.stats.speech_s += len(event.audio) / SAMPLE_RATE_HZ
            spec, self._speculation = self._speculation, None
            same_audio = (event.index, event.end_sample)
            if spec is not None and (spec.index, spec.end_sample) == same_audio:
                future = spec.future  # the decode of exactly this audio is under way
                self.stats.speculative_finals_used += 1
            else:
                if spec is not None:  # cut at max length: other audio
                    self._abandon(spec)
                future = await self._scheduler.submit_final(self._key, self._final_request(event))
            await self._enqueue(
                _Pending(
                    self._utterance_name(event.index),
                    event.start_sample,
                    future,
                    final=True,
                    end_sample=event.end_sample,
                )
            )
        else:  # a blip too short to be speech: its partials (if any) are closed empty
            self._engine._set_speaking(self._key, False)
            spec, self._speculation = self._speculation, None
            if spec is not None:
                self._abandon(spec)
            await self._enqueue(
                _Pending(self._utterance_name(event.index), 0, _resolved(None), final=True)
            )

    async def _enqueue(self, item: _Pending | None) -> None:
        """Queue a final (or the end) for the emitter, waiting while it is behind."""
        if self._emitter is not None and self._emitter.done():
            # The emitter is gone (stopped or failed): nobody reads, so waiting would hang.
            if item is not None:
                item.future.cancel()
            return
        await self._pending.put(item)

    def _resume(self, event: UtteranceResumed) -> None:
        """Speech went on after a pause: its speculative final is at most a partial, or a
        phrase candidate when the pause was long enough."""
        spec, self._speculation = self._speculation, None
        if spec is None:
            return
        start = self._segmenter.utterance_start_sample
        if (
            self.options.phrase_finals
            and spec.index == event.index
            and event.pause_ms >= self.options.phrase_min_pause_ms
            and spec.end_sample - start >= self._phrase_min
        ):
            self._phrases.append(_Phrase(spec.index, spec.end_sample, spec.future))
            del self._phrases[:-4]  # bounded: a later pause covers an earlier one's words
            # The partial that can confirm it: once ``phrase_context_ms`` follow the pause.
            self._last_partial_at = spec.end_sample - start + self._phrase_context - self._interval
            if not spec.shown:
                self._show_as_partial(spec.future, spec.end_sample)
            return
        if self._abandon(spec):
            return
        # Already decoding: the text of the utterance so far, shown as a partial.
        self._last_partial_at = spec.end_sample - self._segmenter.utterance_start_sample
        if not spec.shown and not self._show_as_partial(spec.future, spec.end_sample):
            # nobody awaits it: retrieve its outcome so a failure is not reported as lost
            # (partials off, or the emitter is behind: partials thin out first)
            spec.future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _drop_phrases(self) -> None:
        """Forget the phrase candidates of an utterance that is over."""
        for phrase in self._phrases:
            if phrase is not self._confirmed and not self._scheduler.withdraw(phrase.future):
                phrase.future.add_done_callback(_retrieve)
        self._phrases, self._confirmed = [], None

    def _confirm_phrase(self, index: int, end_sample: int, hyp: Hypothesis) -> None:
        """A partial of utterance ``index`` decoded up to ``end_sample``: does it confirm the
        latest phrase candidate it reaches past by ``phrase_context_ms``?"""
        keys = [word_key(w) for w in hyp.text.split()]
        for phrase in reversed(self._phrases):
            if phrase.index != index or end_sample < phrase.end_sample + self._phrase_context:
                continue
            done = phrase.future.done() and not phrase.future.cancelled()
            alone = phrase.future.result() if done and not phrase.future.exception() else None
            if alone is None or not alone.accepted:
                continue
            words = [word_key(w) for w in alone.text.split()]
            if len(keys) > len(words) and keys[: len(words)] == words:
                self._confirmed = phrase
                return

    async def _maybe_commit_phrase(self) -> None:
        """Commit a confirmed phrase: its decode is the final of the utterance up to its pause;
        the speech after the pause goes on as a new utterance."""
        if self._speculation is not None:
            return  # in a pause: it may end the whole utterance, whose final then covers it
        if self._confirmed is None:
            await self._maybe_commit_word_cut()
            return
        phrase = self._confirmed
        self._confirmed = None
        if phrase.index != self._segmenter.utterance_index:
            return
        events = self._segmenter.split(phrase.end_sample)
        if len(events) != 2:
            return
        ended, started = events
        if not isinstance(ended, UtteranceEnded):
            return
        self._phrases.remove(phrase)
        self.stats.speech_s += len(ended.audio) / SAMPLE_RATE_HZ
        self.stats.phrase_finals += 1
        committed = phrase.future.result()
        self._carry(ended.index, started.index, committed.text if committed else "")
        await self._enqueue(
            _Pending(
                self._utterance_name(ended.index),
                ended.start_sample,
                phrase.future,
                final=True,
                end_sample=ended.end_sample,
            )
        )
        await self._on_event(started)

    def _find_word_cut(self, index: int, start: int, end_sample: int, hyp: Hypothesis) -> None:
        """A partial of utterance ``index`` (from ``start`` to ``end_sample``) with word times:
        the last word that this partial and the one before agree on (LocalAgreement-2), that
        ends a clause (punctuation), lies ``phrase_min_ms`` into the utterance and
        ``phrase_context_ms`` before the decoded end, and after which the VAD heard a dip
        (a window under ``phrase_cut_max_prob`` between its middle and the next word's),
        becomes the cut to commit: its words, cut at that window."""
        previous, self._last_words = self._last_words, (index, start, hyp.words)
        seg = self._segmenter
        if previous is None or previous[:2] != (index, start):
            return
        if (index, start) != (seg.utterance_index, seg.utterance_start_sample):
            return
        words = hyp.words
        agreed, misses = 0, 0
        same: list[bool] = []
        for a, b in zip(previous[2], words, strict=False):
            same.append(word_key(a.text) == word_key(b.text))
            if not same[-1]:
                misses += 1
                if misses > self.options.phrase_cut_tolerance:
                    break
            agreed += 1
        latest_s = (end_sample - start - self._phrase_context) / SAMPLE_RATE_HZ
        found: tuple[int, int] | None = None  # (last word kept, cut sample)
        for k in range(min(agreed, len(words) - 1)):
            word, after = words[k], words[k + 1]
            if word.end_s > latest_s:
                break
            if word.end_s * SAMPLE_RATE_HZ < self._phrase_min or not _ends_clause(word.text):
                continue
            if not same[k]:
                continue
            cut, prob = seg.quietest_window(
                start + round((word.start_s + word.end_s) / 2 * SAMPLE_RATE_HZ),
                start + round((after.start_s + after.end_s) / 2 * SAMPLE_RATE_HZ),
            )
            if prob < self.options.phrase_cut_max_prob:
                found = (k, cut)
        if found is None:
            return
        last, cut_sample = found
        # the punctuated word lasts until the next one starts: it ends at the cut
        cut_s = (cut_sample - start) / SAMPLE_RATE_HZ
        kept = (*words[:last], replace(words[last], end_s=min(words[last].end_s, cut_s)))
        text = " ".join(w.text for w in kept)
        self._word_cut = _WordCut(
            index,
            start,
            cut_sample,
            Hypothesis(
                text=text,
                language=hyp.language,
                language_probability=hyp.language_probability,
                avg_logprob=hyp.avg_logprob,
                no_speech_prob=hyp.no_speech_prob,
                compression_ratio=compression_ratio(text),
                words=kept,
            ),
        )

    async def _maybe_commit_word_cut(self) -> None:
        """Commit a word cut: its words are the final of the utterance up to the dip's quietest
        window; the speech after it goes on as a new utterance."""
        cut, self._word_cut = self._word_cut, None
        seg = self._segmenter
        if cut is None or (cut.index, cut.start_sample) != (
            seg.utterance_index,
            seg.utterance_start_sample,
        ):
            return
        events = seg.split(cut.cut_sample)
        if len(events) != 2:
            return
        ended, started = events
        if not isinstance(ended, UtteranceEnded):
            return
        self.stats.speech_s += len(ended.audio) / SAMPLE_RATE_HZ
        self.stats.phrase_finals += 1
        self.stats.word_cut_finals += 1
        self._carry(ended.index, started.index, cut.hypothesis.text)
        await self._enqueue(
            _Pending(
                self._utterance_name(ended.index),
                ended.start_sample,
                _resolved(cut.hypothesis),
                final=True,
                end_sample=ended.end_sample,
            )
        )
        await self._on_event(started)

    def _carry(self, ended: int, started: int, text: str) -> None:
        """A phrase final of utterance ``ended`` was committed and speech goes on as utterance
        ``started``: its decodes get the run's committed text as their prompt."""
        if not self.options.phrase_prompt:
            return
        before = self._carried[1] if self._carried and self._carried[0] == ended else ""
        text = f"{before} {text}".strip()
        # the recognizer keeps the prompt's last 223 tokens; a few sentences are plenty
        self._carried = (started, text[-_MAX_PROMPT_CHARS:].lstrip())

    def _previous_text(self, index: int) -> str | None:
        """The previous-text prompt of utterance ``index``'s decodes, if any."""
        if self._carried is not None and self._carried[0] == index:
            return self._carried[1]
        if self.options.condition_on_previous and self._last_final_text:
            return self._last_final_text[-_MAX_PROMPT_CHARS:]
        return None

    def _show_as_partial(self, future: asyncio.Future[Hypothesis | None], end_sample: int) -> bool:
        """Queue a decode's text as a partial of the open utterance, if partials are wanted and
        the emitter keeps up."""
        if not self.options.emit_partials or self._pending.full():
            return False
        start = self._segmenter.utterance_start_sample
        self._pending.put_nowait(
            _Pending(self._utterance_id, start, future, final=False, end_sample=end_sample)
        )
        return True

    def _abandon(self, spec: _Speculation) -> bool:
        """Withdraw a speculative decode not yet started; False when it is already decoding."""
        return self._scheduler.withdraw(spec.future)

    def _maybe_early_final(self) -> None:
        """Publish the pause's speculative decode as the final once the pause is long enough."""
        spec, ms = self._speculation, self.options.early_final_ms
        if not ms or spec is None or spec.published or self._segmenter.pause_ms < ms:
            return
        if self._pending.full():
            return  # the emitter is behind: the final comes at the utterance's end
        self._speculation = replace(spec, published=True)
        start = self._segmenter.utterance_start_sample
        name = self._utterance_name(spec.index)
        self._pending.put_nowait(
            _Pending(name, start, spec.future, final=True, end_sample=spec.end_sample, early=True)
        )
        self.stats.early_finals += 1

    def _maybe_partial(self) -> None:
        if not self.options.emit_partials or self._partial_in_flight or self._pending.full():
            return
        if not self._segmenter.in_speech or self._segmenter.in_pause:
            # A pause adds no words, and a partial decode started now would hold up the
            # final's (one decode runs at a time).
            return
        n = self._segmenter.utterance_samples()
        if n < self._min_partial or n - self._last_partial_at < self._interval:
            return
        self._last_partial_at = n
        index = self._segmenter.utterance_index
        request = DecodeRequest(
            audio=self._segmenter.utterance_audio(),
            language=self.options.language or self._utterance_language,
            previous_text=self._previous_text(index),
            # word times for word cuts (two partials must agree: from the one before)
            want_words=self._word_cuts and n + self._interval >= self._phrase_min,
            final=False,
            hotwords=self.options.hotwords,
            initial_prompt=self.options.initial_prompt,
        )
        future = self._scheduler.submit_partial(self._key, request)
        self._partial_in_flight = True
        start = self._segmenter.utterance_start_sample
        future.add_done_callback(lambda f: self._partial_done(f, index, start, start + n))
        self._pending.put_nowait(
            _Pending(self._utterance_id, start, future, final=False, end_sample=start + n)
        )

    def _final_request(self, event: UtterancePaused | UtteranceEnded) -> DecodeRequest:
        o = self.options
        return DecodeRequest(
            audio=event.audio,
            language=o.language,
            previous_text=self._previous_text(event.index),
            want_words=True,
            final=True,
            hotwords=o.hotwords,
            initial_prompt=o.initial_prompt,
        )

    def _partial_done(
        self, future: asyncio.Future[Hypothesis | None], index: int, start: int, end_sample: int
    ) -> None:
        self._partial_in_flight = False
        if not future.cancelled() and future.exception() is None:
            hyp = future.result()
            if hyp is not None and hyp.language_probability >= 0.5:
                self._utterance_language = self._utterance_language or hyp.language
            if hyp is not None and hyp.accepted and self._phrases:
                self._confirm_phrase(index, end_sample, hyp)
            if hyp is not None and hyp.accepted and hyp.words and self._word_cuts:
                self._find_word_cut(index, start, end_sample, hyp)

    # -- output ---------------------------------------------------------------------------------
    def _ensure_emitter(self) -> None:
        if self._emitter is None:
            self._emitter = asyncio.get_running_loop().create_task(
                self._emit(), name=f"captions:{self.name}"
            )

    async def _emit(self) -> None:
        agreement = StablePrefix(self.options.agreement)
        agreement_for = ""
        shown: dict[str, str] = {}  # utterance id -> last partial text on screen
        finalised: set[str] = set()
        early: dict[str, Hypothesis | None] = {}  # utterance id -> its early final's decode
        try:
            while (item := await self._pending.get()) is not None:
                try:
                    hyp = await item.future
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # this emitter is being stopped
                    continue  # only the decode was cancelled: nothing to show for it
                except AsrError:
                    self.stats.errors += 1
                    hyp = None
                caption: Caption | None
                if item.final and item.early:  # partials may follow: the speech may go on
                    early[item.utterance_id] = hyp
                    caption = _final_caption(item, hyp, had_partials=item.utterance_id in shown)
                    if caption is not None:
                        shown[item.utterance_id] = caption.text
                elif item.final:
                    finalised.add(item.utterance_id)
                    if item.utterance_id in early and early.pop(item.utterance_id) is hyp:
                        shown.pop(item.utterance_id, None)
                        continue  # the same decode went out as the early final
                    caption = _final_caption(item, hyp, had_partials=item.utterance_id in shown)
                    shown.pop(item.utterance_id, None)
                    if caption is not None and caption.text:
                        self._last_final_text = caption.text
                else:
                    if hyp is None or not hyp.accepted or item.utterance_id in finalised:
                        continue
                    if agreement_for != item.utterance_id:
                        agreement = StablePrefix(self.options.agreement)
                        agreement_for = item.utterance_id
                    stable, tail = agreement.update(hyp.text.split())
                    text = " ".join(stable + tail)
                    if text == shown.get(item.utterance_id):
                        continue
                    shown[item.utterance_id] = text
                    caption = Caption(
                        utterance_id=item.utterance_id,
                        text=text,
                        is_final=False,
                        start_ms=_ms(item.start_sample),
                        end_ms=_ms(item.end_sample),
                        language=hyp.language,
                        confidence=hyp.confidence,
                        stable_text=" ".join(stable),
                    )
                if caption is not None:
                    await self._put(caption)
            # The end goes after every caption, however far behind the consumer is.
            await self._captions.put(None)
        except BaseException:
            # Stopped or failed: end the captions if there is room (``aclose`` abandons them).
            with contextlib.suppress(asyncio.QueueFull):
                self._captions.put_nowait(None)
            raise

    async def _put(self, caption: Caption) -> None:
        if caption.is_final:
            self.stats.finals += 1
            await self._captions.put(caption)  # finals are never dropped
            return
        try:
            self._captions.put_nowait(caption)
            self.stats.partials += 1
        except asyncio.QueueFull:  # a slow consumer loses partials, not finals
            self.stats.dropped_captions += 1


def _final_caption(item: _Pending, hyp: Hypothesis | None, *, had_partials: bool) -> Caption | None:
    start_ms, end_ms = _ms(item.start_sample), _ms(item.end_sample)
    if hyp is None or not hyp.accepted:
        if not had_partials:
            return None
        # Close the partials already on screen with an empty final.
        language = hyp.language if hyp is not None else ""
        return Caption(item.utterance_id, "", True, start_ms, end_ms, language, 0.0)
    words = tuple(
        Word(
            text=w.text,
            start_ms=start_ms + round(w.start_s * 1000),
            end_ms=start_ms + round(w.end_s * 1000),
            probability=w.probability,
        )
        for w in hyp.words
    )
    return Caption(
        utterance_id=item.utterance_id,
        text=hyp.text,
        is_final=True,
        start_ms=start_ms,
        end_ms=end_ms,
        language=hyp.language,
        confidence=hyp.confidence,
        stable_text=hyp.text,
        words=words,
    )


_CLAUSE_END = frozenset(",.;:!?")
_MAX_PROMPT_CHARS = 600


def _ends_clause(word: str) -> bool:
    """Whisper ends a clause with punctuation: a word such as ``die,`` or ``memory.``"""
    text = word.rstrip("\"')”’»]")
    return bool(text) and text[-1] in _CLAUSE_END


def _ms(sample: int) -> int:
    return sample * 1000 // SAMPLE_RATE_HZ


def _retrieve(future: asyncio.Future[Hypothesis | None]) -> None:
    """Nobody awaits this decode: retrieve its outcome so a failure is not reported as lost."""
    if not future.cancelled():
        future.exception()


def _resolved(value: Hypothesis | None) -> asyncio.Future[Hypothesis | None]:
    future: asyncio.Future[Hypothesis | None] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
