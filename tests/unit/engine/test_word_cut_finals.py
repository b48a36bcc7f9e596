"""Phrase finals at words: in speech whose pauses the VAD does not report, the words two
consecutive partials agree on, up to a clause's punctuation followed by a dip in the VAD's
speech probability, are committed as a final (bot/pipeline/engine.py, ``_find_word_cut``;
``Segmenter.quietest_window``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from bot.pipeline.asr import DecodeRequest, Hypothesis, RecognizedWord
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption
from bot.pipeline.vad import Segmenter, SegmenterOptions
from tests.unit.engine.fakes import AmplitudeVad, silence, tone
from tests.unit.engine.test_engine import make_engine, transcribe

SR = SAMPLE_RATE_HZ
WORD_S = 0.25
# Between words the level drops to 0.4: under the VAD threshold (0.5) but above its hysteresis
# (0.35), so the segmenter hears speech go on. A dip is 64 ms at 0.1: two silent windows, fewer
# than a pause needs (the 96 ms post-roll), so no pause is reported, as in a reader's breath.
LOW = 0.4
PHRASE_GAP_S = 0.3


def reading(phrases: int = 3, words: int = 6, *, dip: bool = True) -> np.ndarray:
    """``phrases`` phrases of ``words`` words, 0.05 s between words, 0.3 s between phrases."""
    between = [tone(0.118, LOW), tone(0.064, 0.1 if dip else LOW), tone(0.118, LOW)]
    parts: list[np.ndarray] = [silence(0.5)]
    for p in range(phrases):
        for w in range(words):
            parts.append(tone(WORD_S))
            if w < words - 1:
                parts.append(tone(0.05, LOW))
        if p < phrases - 1:
            parts.extend(between)
    parts.append(silence(1.0))
    return np.concatenate(parts)


def phrase_ends_ms(phrases: int = 3, words: int = 6) -> list[int]:
    """Where each phrase's last word ends (ms of the stream)."""
    phrase_ms = round((words * WORD_S + (words - 1) * 0.05) * 1000)
    return [500 + phrase_ms + k * (phrase_ms + round(PHRASE_GAP_S * 1000)) for k in range(phrases)]


class BurstRecognizer:
    """A word per burst of the audio above 0.6 (10 ms frames). Like Whisper's aligned words,
    each lasts until the next one starts, and a word before a long gap (>= 0.2 s) ends a
    clause: ``name(k, request, clause_end)`` spells the k-th word."""

    model_name = "fake"
    multilingual = False

    def __init__(self, name: Callable[[int, DecodeRequest, bool], str] | None = None) -> None:
        self.name = name or (lambda k, r, clause_end: f"w{k}," if clause_end else f"w{k}")
        self.requests: list[DecodeRequest] = []

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        self.requests.extend(requests)
        return [self._decode(r) for r in requests]

    def _decode(self, r: DecodeRequest) -> Hypothesis:
        frames = len(r.audio) // 160
        loud = [
            float(np.max(np.abs(r.audio[i * 160 : (i + 1) * 160]))) > 0.6 for i in range(frames)
        ]
        bursts: list[tuple[int, int]] = []
        start: int | None = None
        for i, on in enumerate([*loud, False]):
            if on and start is None:
                start = i
            elif not on and start is not None:
                bursts.append((start, i))
                start = None
        words = []
        for k, (a, b) in enumerate(bursts):
            after = bursts[k + 1][0] if k + 1 < len(bursts) else b
            name = self.name(k, r, after - b >= 20)
            words.append(RecognizedWord(name, a / 100, after / 100, 0.9))
        text = " ".join(w.text for w in words)
        return Hypothesis(
            text=text,
            language="en",
            language_probability=1.0,
            avg_logprob=-0.2,
            no_speech_prob=0.01,
            compression_ratio=1.0,
            words=tuple(words) if r.want_words else (),
            rejected=None if text else "empty",
        )


def finals(captions: list[Caption]) -> list[Caption]:
    return [c for c in captions if c.is_final and c.text]


async def test_agreed_words_up_to_a_clause_and_a_dip_are_committed_without_a_vad_pause() -> None:
    rec = BurstRecognizer()
    captions = await transcribe(make_engine(rec), reading(), realtime_step_s=0.002)
    done = finals(captions)
    assert len(done) >= 2
    assert len({c.utterance_id for c in done}) == len(done)
    # every word once: none lost at a cut, none decoded twice
    assert sum(len(c.text.split()) for c in done) == 18
    for first, rest in itertools.pairwise(done):
        assert first.end_ms <= rest.start_ms
        # cut in the 0.3 s between two phrases, never between two words of a phrase
        assert any(end < first.end_ms < end + 300 for end in phrase_ends_ms()), first.end_ms
        assert first.text.endswith(",") and len(first.text.split()) % 6 == 0
        assert first.words and first.words[-1].end_ms <= first.end_ms
    # the final comes before any caption of the speech after the cut
    order = [c.utterance_id for c in captions]
    assert order.index(done[1].utterance_id) > order.index(done[0].utterance_id)
    assert captions.index(done[0]) < order.index(done[1].utterance_id)


async def test_off_the_utterance_waits_for_its_end() -> None:
    rec = BurstRecognizer()
    captions = await transcribe(
        make_engine(rec, phrase_word_cuts=False), reading(), realtime_step_s=0.002
    )
    assert len(finals(captions)) == 1
    # and partials do not pay for word times
    assert not any(r.want_words for r in rec.requests if not r.final)


async def test_phrase_finals_off_turns_word_cuts_off_too() -> None:
    rec = BurstRecognizer()
    captions = await transcribe(
        make_engine(rec, phrase_finals=False), reading(), realtime_step_s=0.002
    )
    assert len(finals(captions)) == 1


async def test_punctuation_where_the_vad_hears_no_dip_is_not_a_boundary() -> None:
    rec = BurstRecognizer()
    captions = await transcribe(make_engine(rec), reading(dip=False), realtime_step_s=0.002)
    assert len(finals(captions)) == 1


async def test_a_dip_after_a_word_that_ends_no_clause_is_not_a_boundary() -> None:
    rec = BurstRecognizer(lambda k, r, clause_end: f"w{k}")
    captions = await transcribe(make_engine(rec), reading(), realtime_step_s=0.002)
    assert len(finals(captions)) == 1


async def test_words_the_next_partial_changes_are_not_committed() -> None:
    # Every decode spells its words differently (they depend on how much audio it saw): two
    # consecutive partials never agree on a word, so nothing is cut.
    rec = BurstRecognizer(lambda k, r, end: f"w{k}x{len(r.audio) // 1600}{',' if end else ''}")
    captions = await transcribe(make_engine(rec), reading(), realtime_step_s=0.002)
    assert len(finals(captions)) == 1


def test_quietest_window_is_the_middle_of_the_least_speech_like_window_in_the_span() -> None:
    seg = Segmenter(AmplitudeVad(), SegmenterOptions(min_silence_ms=400))  # type: ignore[arg-type]
    audio = np.concatenate([silence(0.5), tone(1.0), tone(0.3, LOW), tone(0.1, 0.1), tone(1.0)])
    seg.push(audio)
    assert seg.in_speech and not seg.in_pause
    cut, prob = seg.quietest_window(int(1.5 * SR), int(1.9 * SR))
    assert int(1.8 * SR) <= cut <= int(1.9 * SR)  # inside the 0.1 stretch
    assert prob <= 0.11
    # a span holding no whole window: its middle, and no dip
    start = seg.utterance_start_sample
    assert seg.quietest_window(start + 1000, start + 1100) == (start + 1050, 1.0)


async def test_the_speech_after_a_cut_is_decoded_with_the_committed_text_as_its_prompt() -> None:
    rec = BurstRecognizer()
    captions = await transcribe(
        make_engine(rec, phrase_prompt=True), reading(), realtime_step_s=0.002
    )
    done = finals(captions)
    assert len(done) >= 2
    # what each utterance's decodes were prompted with: nothing before the first cut, then the
    # text committed so far in this run of speech (each cut adds its words)
    runs = [" ".join(c.text for c in done[:k]) for k in range(1, len(done))]
    prompts = [r.previous_text for r in rec.requests]
    assert prompts[0] is None
    assert set(prompts) <= {None, *runs}
    assert runs[0] in prompts
    last_final = [r for r in rec.requests if r.final][-1]
    assert last_final.previous_text == runs[-1]


async def test_without_phrase_prompts_no_decode_carries_text() -> None:
    rec = BurstRecognizer()  # the default: off
    captions = await transcribe(make_engine(rec), reading(), realtime_step_s=0.002)
    assert len(finals(captions)) >= 2
    assert all(r.previous_text is None for r in rec.requests)


async def test_an_utterance_after_a_real_pause_is_decoded_alone_unless_asked() -> None:
    # two sentences, 1.5 s apart: the VAD ends the first; no cut joins them
    audio = np.concatenate([reading(1), reading(1)])
    for condition in (False, True):
        rec = BurstRecognizer()
        captions = await transcribe(
            make_engine(rec, phrase_prompt=True, condition_on_previous=condition),
            audio,
            realtime_step_s=0.002,
        )
        done = finals(captions)
        assert len(done) == 2
        prompts = {r.previous_text for r in rec.requests}
        assert prompts == ({None, done[0].text} if condition else {None})


async def test_a_tolerance_lets_a_respelled_word_before_the_cut_pass() -> None:
    # The second word of each utterance is spelled anew by every decode: exact agreement never
    # reaches a clause's end, one tolerated difference does.
    def name(k: int, r: DecodeRequest, end: bool) -> str:
        word = f"w{k}x{len(r.audio) // 1600}" if k == 1 else f"w{k}"
        return word + ("," if end else "")

    for tolerance, cuts in ((0, False), (1, True)):
        rec = BurstRecognizer(name)
        captions = await transcribe(
            make_engine(rec, phrase_cut_tolerance=tolerance), reading(), realtime_step_s=0.002
        )
        done = finals(captions)
        assert (len(done) >= 2) is cuts, [c.text for c in done]
        # every word once, whatever its spelling
        assert sum(len(c.text.split()) for c in done) == 18


async def test_the_cut_word_itself_must_match() -> None:
    # Only clause ends are respelled: no tolerance commits a word the partials disagree on.
    def name(k: int, r: DecodeRequest, end: bool) -> str:
        return f"w{k}x{len(r.audio) // 1600}," if end else f"w{k}"

    rec = BurstRecognizer(name)
    captions = await transcribe(
        make_engine(rec, phrase_cut_tolerance=3), reading(), realtime_step_s=0.002
    )
    assert len(finals(captions)) == 1
