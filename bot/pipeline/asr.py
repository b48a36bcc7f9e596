"""Whisper recognition (faster-whisper / CTranslate2) of one utterance at a time.

``WhisperRecognizer.decode`` is synchronous and heavy: call it from the scheduler's worker
thread, never from the event loop. It calls CTranslate2's encoder and ``generate`` directly
instead of ``WhisperModel.transcribe``, for two reasons:

* **Trimmed encoder input.** ``transcribe`` always encodes a padded 30 s window (3000 mel
  frames), so 2 s of audio costs as much as 30 s. With ``encoder_window="trimmed"`` the mel
  features cover the utterance plus ``trim_margin_s`` of silence; on this project's eval clips
  that is about 2.5x faster at equal English WER (see bench/engine.py and the README).
* **Guards against invented text**, applied to every hypothesis: a decode that Whisper itself
  marks as no-speech (``no_speech_prob`` above its threshold with a low ``avg_logprob``), that
  loops (gzip compression ratio too high) or that is too unlikely is rejected, and no text from
  earlier utterances conditions the decoder unless the request carries it (``previous_text``:
  the engine passes it only to speech that goes on after a phrase final, unless
  ``ASR_CONDITION_ON_PREVIOUS`` is set).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from bot.pipeline.agreement import word_key
from bot.pipeline.models import ResolvedModel
from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.pipeline.vad import Float32Array
from core.errors import AsrError, ModelUnavailableError
from core.logs import error_fields

logger = logging.getLogger("bot.pipeline")

HOP_SAMPLES = 160  # one mel frame = 10 ms
MAX_FRAMES = 3000  # Whisper's 30 s window
MAX_DECODE_S = 29.0


@dataclass(frozen=True, slots=True)
class AsrOptions:
    device: str = "cpu"
    compute_type: str = "int8"
    # Threads of all decodes together: each of ``decode_workers`` concurrent decodes (one
    # CTranslate2 replica each) gets ``cpu_threads // decode_workers`` (at least one).
    cpu_threads: int = 2
    decode_workers: int = 1
    language: str | None = None  # None = detect
    beam_size: int = 1
    encoder_window: Literal["trimmed", "full"] = "trimmed"
    # Silence appended to a trimmed window. Less than ~3 s makes Whisper loop on short
    # utterances (it never sees the window end); 5 s measured loop-free on the eval set.
    trim_margin_s: float = 5.0
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    # A hypothesis whose average log-probability is below this is rejected even when Whisper
    # does not call it no-speech: such text is almost always invented.
    reject_log_prob: float = -1.5
    compression_ratio_threshold: float = 2.4
    initial_prompt: str | None = None
    hotwords: str | None = None
    # Temperatures tried in turn when a *final* decode loops or is too unlikely.
    fallback_temperatures: tuple[float, ...] = (0.0, 0.4)
    max_new_tokens: int = 220
    # Speech is rarely above ~8 tokens/s; a longer output is a loop, so decoding stops there.
    max_tokens_per_s: float = 12.0


@dataclass(frozen=True, slots=True)
class RecognizedWord:
    text: str
    start_s: float  # relative to the decoded audio
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """What one decode produced. ``rejected`` is a reason, or ``None`` when the text stands."""

    text: str
    language: str
    language_probability: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[RecognizedWord, ...] = field(default=())
    rejected: str | None = None

    @property
    def accepted(self) -> bool:
        return self.rejected is None and bool(self.text)

    @property
    def confidence(self) -> float:
        if self.words:
            return float(np.mean([w.probability for w in self.words]))
        return math.exp(self.avg_logprob) if self.avg_logprob > -50 else 0.0


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    audio: Float32Array
    language: str | None = None  # None: the recognizer's configured language, else detect
    want_words: bool = False
    final: bool = False
    # Text said just before this audio, as Whisper's previous-text prompt (after the stream's
    # vocabulary); the engine decides when (``StreamOptions.phrase_prompt``).
    previous_text: str | None = None
    # The stream's vocabulary (a session's own); None: the recognizer's configured one.
    hotwords: str | None = None
    initial_prompt: str | None = None


def collapse_repeats(text: str, *, min_words: int = 3) -> str:
    """Drop immediate repeats of a block of ``min_words`` or more words: a decoder loop.

    People do repeat words ("I, I think"), but a run of three or more words said twice in a row
    is, in Whisper's output, nearly always the decoder re-reading the same audio.
    """
    words = text.split()
    keys = [word_key(w) for w in words]
    changed = True
    while changed:
        changed = False
        n = len(keys)
        for size in range(n // 2, min_words - 1, -1):
            for i in range(0, n - 2 * size + 1):
                if keys[i : i + size] == keys[i + size : i + 2 * size]:
                    del words[i + size : i + 2 * size], keys[i + size : i + 2 * size]
                    changed = True
                    break
            if changed:
                break
    return " ".join(words)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class WhisperRecognizer:
    """One Whisper model, shared by every stream of the process.

    ``decode_batch`` may be called from ``options.decode_workers`` threads at once (the
    scheduler's workers): CTranslate2 runs each call on its own replica; the caches here are
    plain dicts whose worst race is a tokenizer built twice.
    """

    def __init__(self, model: ResolvedModel, options: AsrOptions | None = None) -> None:
        from faster_whisper import WhisperModel

        self.options = options or AsrOptions()
        self.model_name = model.name
        try:
            self._model = WhisperModel(
                model.path_or_hub_name,
                device=self.options.device,
                compute_type=self.options.compute_type,
                cpu_threads=max(1, self.options.cpu_threads // self.options.decode_workers),
                num_workers=self.options.decode_workers,
                local_files_only=model.is_local,
            )
        except Exception as exc:  # CTranslate2/HF raise a zoo of types: translate once here
            raise ModelUnavailableError(
                f"cannot load ASR model {model.name!r} from {model.path_or_hub_name}: {exc}"
            ) from exc
        self.multilingual: bool = bool(self._model.model.is_multilingual)
        if not self.multilingual and self.options.language not in (None, "en"):
            raise ModelUnavailableError(
                f"ASR model {model.name!r} is English-only; ASR_LANGUAGE="
                f"{self.options.language!r} needs a multilingual model"
            )
        self._tokenizers: dict[str | None, Any] = {}
        self._prompts: dict[tuple[str | None, str | None], list[int]] = {}

    # -- public ---------------------------------------------------------------------------------
    def decode(self, request: DecodeRequest) -> Hypothesis:
        return self.decode_batch([request])[0]

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """Decode several utterances in one encoder/decoder pass (padded to the longest)."""
        if not requests:
            return []
        try:
            return self._decode_batch(requests)
        except (ValueError, RuntimeError) as exc:
            raise AsrError(f"decode failed: {type(exc).__name__}") from exc

    # -- internals ------------------------------------------------------------------------------
    def _tokenizer(self, language: str | None) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        key = language if self.multilingual else None
        tok = self._tokenizers.get(key)
        if tok is None:
            tok = Tokenizer(
                self._model.hf_tokenizer,
                self.multilingual,
                task="transcribe",
                language=key if self.multilingual else "en",
            )
            self._tokenizers[key] = tok
        return tok

    def _prompt_tokens(self, request: DecodeRequest) -> list[int]:
        """The previous-text prompt of a request: its hotwords and initial prompt (each the
        recognizer's configured one when the request has none), tokenized once per pair."""
        o = self.options
        hotwords = request.hotwords if request.hotwords is not None else o.hotwords
        initial = request.initial_prompt if request.initial_prompt is not None else o.initial_prompt
        key = (hotwords, initial)
        tokens = self._prompts.get(key)
        if tokens is None:
            text = " ".join(t.strip() for t in key if t and t.strip())
            tokens = self._tokenizer("en").encode(" " + text)[-223:] if text else []
            if len(self._prompts) >= 256:  # sessions' vocabularies: bounded
                self._prompts.clear()
            self._prompts[key] = tokens
        return tokens

    def _features(self, audio: Float32Array, n_frames: int) -> Float32Array:
        fe = self._model.feature_extractor
        if self.options.encoder_window == "full":
            feats = fe(audio[: int(MAX_DECODE_S * SAMPLE_RATE_HZ)])[:, :MAX_FRAMES]
            pad = MAX_FRAMES - feats.shape[1]
            feats = np.pad(feats, ((0, 0), (0, pad))) if pad > 0 else feats
            return np.asarray(feats, dtype=np.float32)
        margin = int(self.options.trim_margin_s * SAMPLE_RATE_HZ)
        feats = fe(np.pad(audio, (0, margin)))
        feats = feats[:, : min(MAX_FRAMES, n_frames)]
        if feats.shape[1] < n_frames:
            feats = np.pad(feats, ((0, 0), (0, n_frames - feats.shape[1])))
        return np.asarray(feats, dtype=np.float32)

    def _decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        import ctranslate2

        o = self.options
        audios = [r.audio[: int(MAX_DECODE_S * SAMPLE_RATE_HZ)] for r in requests]
        longest = max(len(a) for a in audios) + int(o.trim_margin_s * SAMPLE_RATE_HZ)
        n_frames = min(MAX_FRAMES, longest // HOP_SAMPLES + 1)
        n_frames += n_frames % 2  # the encoder's stride-2 convolution wants an even count
        feats = np.stack([self._features(a, n_frames) for a in audios]).astype(np.float32)
        encoder_output = self._model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(feats)), to_cpu=False
        )

        languages: list[tuple[str, float]] = []
        need_detection = [
            i
            for i, r in enumerate(requests)
            if self.multilingual and not (r.language or o.language)
        ]
        detected: dict[int, tuple[str, float]] = {}
        if need_detection:
            results = self._model.model.detect_language(encoder_output)
            for i in need_detection:
                lang_token, prob = results[i][0]
                detected[i] = (lang_token[2:-2], float(prob))
        for i, r in enumerate(requests):
            if i in detected:
                languages.append(detected[i])
            elif self.multilingual:
                languages.append((r.language or o.language or "en", 1.0))
            else:
                languages.append(("en", 1.0))

        hyps = self._generate(encoder_output, requests, languages, temperature=0.0)
        # Fallback for finals only: a looping or very unlikely decode gets one warmer retry.
        for temperature in o.fallback_temperatures[1:]:
            retry = [
                i
                for i, (r, h) in enumerate(zip(requests, hyps, strict=True))
                if r.final and h.rejected in ("compression_ratio", "low_logprob")
            ]
            if not retry:
                break
            again = self._generate(
                encoder_output, requests, languages, temperature=temperature, only=retry
            )
            for i, h in zip(retry, again, strict=True):
                hyps[i] = h

        for i, r in enumerate(requests):
            h = hyps[i]
            if r.want_words and h.accepted:
                hyps[i] = self._with_words(h, encoder_output, i, n_frames, len(audios[i]))
        return hyps

    def _generate(
        self,
        encoder_output: Any,
        requests: Sequence[DecodeRequest],
        languages: Sequence[tuple[str, float]],
        *,
        temperature: float,
        only: Sequence[int] | None = None,
    ) -> list[Hypothesis]:
        import ctranslate2

        o = self.options
        indices = list(only) if only is not None else list(range(len(requests)))
        if only is not None:
            arr = np.asarray(encoder_output)
            enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(arr[indices]))
        else:
            enc = encoder_output
        prompts = []
        for i in indices:
            tok = self._tokenizer(languages[i][0])
            previous = list(self._prompt_tokens(requests[i]))
            prev_text = requests[i].previous_text
            if prev_text:
                previous += tok.encode(" " + prev_text.strip())
            prompt: list[int] = []
            if previous:
                prompt += [tok.sot_prev, *previous[-223:]]
            prompt += [*tok.sot_sequence, tok.no_timestamps]
            prompts.append(prompt)
        tok0 = self._tokenizer(languages[indices[0]][0])
        results = self._model.model.generate(
            enc,
            prompts,
            beam_size=o.beam_size if temperature == 0 else 1,
            num_hypotheses=1,
            sampling_temperature=max(temperature, 1e-3) if temperature > 0 else 1.0,
            sampling_topk=0 if temperature > 0 else 1,
            max_length=max(len(p) for p in prompts) + self._token_budget(requests, indices),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(_suppressed(tok0)),
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
        )
        out: list[Hypothesis] = []
        for i, res in zip(indices, results, strict=True):
            tok = self._tokenizer(languages[i][0])
            tokens = [t for t in res.sequences_ids[0] if t < tok.eot]
            # A partial ends mid-speech, where Whisper loops most: collapse even 2-word repeats.
            min_words = 3 if requests[i].final else 2
            text = collapse_repeats(tok.decode(tokens).strip(), min_words=min_words)
            # CTranslate2's score is the cumulative log-prob divided by the token count
            # (length_penalty=1); Whisper's avg_logprob also counts the end-of-text token.
            seq_len = len(tokens)
            avg_logprob = float(res.scores[0]) * seq_len / (seq_len + 1) if tokens else -math.inf
            hyp = Hypothesis(
                text=text,
                language=languages[i][0],
                language_probability=languages[i][1],
                avg_logprob=avg_logprob,
                no_speech_prob=float(res.no_speech_prob),
                compression_ratio=compression_ratio(text),
            )
            out.append(replace(hyp, rejected=self._rejection(hyp)))
        return out

    def _token_budget(self, requests: Sequence[DecodeRequest], indices: Sequence[int]) -> int:
        longest_s = max(len(requests[i].audio) for i in indices) / SAMPLE_RATE_HZ
        return min(self.options.max_new_tokens, int(16 + longest_s * self.options.max_tokens_per_s))

    def _rejection(self, h: Hypothesis) -> str | None:
        o = self.options
        if not h.text or not any(ch.isalnum() for ch in h.text):
            return "empty"
        if h.no_speech_prob > o.no_speech_threshold and h.avg_logprob < o.log_prob_threshold:
            return "no_speech"
        if h.compression_ratio > o.compression_ratio_threshold:
            return "compression_ratio"
        if h.avg_logprob < o.reject_log_prob:
            return "low_logprob"
        return None

    def _with_words(
        self, h: Hypothesis, encoder_output: Any, index: int, n_frames: int, n_samples: int
    ) -> Hypothesis:
        import ctranslate2

        tok = self._tokenizer(h.language)
        text_tokens = tok.encode(" " + h.text)
        arr = np.asarray(encoder_output)
        enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(arr[index : index + 1]))
        num_frames = min(n_frames, n_samples // HOP_SAMPLES)
        try:
            alignment = self._model.find_alignment(tok, [text_tokens], enc, num_frames)[0]
        except (ValueError, RuntimeError, IndexError) as exc:
            logger.warning("word alignment failed", extra=error_fields(exc))
            return h
        duration_s = n_samples / SAMPLE_RATE_HZ
        words = merge_punctuation(
            RecognizedWord(
                text=str(w["word"]).strip(),
                start_s=min(float(w["start"]), duration_s),
                end_s=min(float(w["end"]), duration_s),
                probability=float(w["probability"]),
            )
            for w in alignment
            if str(w["word"]).strip()
        )
        return replace(h, words=words)


_OPENING = frozenset("\"'“‘«¿¡([{")


def merge_punctuation(words: Iterable[RecognizedWord]) -> tuple[RecognizedWord, ...]:
    """Punctuation is never a word of its own: Whisper's alignment times ``.`` or ``,`` as a
    token; it joins the word before it (an opening quote or bracket, the word after it)."""
    out: list[RecognizedWord] = []
    opening = ""
    for word in words:
        if any(ch.isalnum() for ch in word.text):
            if opening:
                word = replace(word, text=opening + word.text)
                opening = ""
            out.append(word)
        elif out and not all(ch in _OPENING for ch in word.text):
            last = out[-1]
            out[-1] = replace(last, text=last.text + word.text, end_s=max(last.end_s, word.end_s))
        else:
            opening += word.text
    return tuple(out)


def _suppressed(tok: Any) -> tuple[int, ...]:
    tokens = set(tok.non_speech_tokens)
    tokens.update([tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm, tok.no_speech])
    return tuple(sorted(t for t in tokens if t is not None))
