"""Which words of a growing partial are stable: LocalAgreement over consecutive decodes.

Each partial re-decodes the whole utterance so far. A word becomes *stable* once two
consecutive decodes agree on it and on every word before it (LocalAgreement-2); stable words
are never taken back for the rest of the utterance, so captions do not flicker. The words after
the stable prefix are shown as a tentative tail that the next decode may revise.
"""

from __future__ import annotations

import unicodedata


def word_key(word: str) -> str:
    """How words are compared: case- and punctuation-insensitive."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", word).casefold() if ch.isalnum())


class StablePrefix:
    """LocalAgreement-n over the hypotheses of one utterance (``n`` decodes must agree)."""

    def __init__(self, agreement: int = 2) -> None:
        if agreement < 1:
            raise ValueError("agreement must be at least 1")
        self._agreement = agreement
        self._history: list[list[str]] = []
        self.stable: list[str] = []

    def update(self, words: list[str]) -> tuple[list[str], list[str]]:
        """Add one decode's words; return ``(stable, tentative)``."""
        start = self._aligned_start(words)
        tail = words[start:]
        self._history.append(tail)
        self._history = self._history[-self._agreement :]
        if len(self._history) == self._agreement:
            agreed = _common_prefix(self._history)
            if agreed:
                self.stable.extend(tail[:agreed])
                tail = tail[agreed:]
                # What later decodes are compared against starts after the new stable words.
                self._history = [h[agreed:] for h in self._history]
        return list(self.stable), list(tail)

    def _aligned_start(self, words: list[str]) -> int:
        """Where the words after the stable prefix begin in a new hypothesis."""
        n = len(self.stable)
        keys = [word_key(w) for w in words[:n]]
        if keys == [word_key(w) for w in self.stable]:
            return n
        # The decoder revised a stable word: find the last stable word again and continue
        # after it; if it cannot be found, fall back to position.
        if n:
            last = word_key(self.stable[-1])
            for i in range(min(len(words), n + 2) - 1, max(-1, n - 3), -1):
                if word_key(words[i]) == last:
                    return i + 1
        return min(n, len(words))


def _common_prefix(seqs: list[list[str]]) -> int:
    n = 0
    for column in zip(*seqs, strict=False):
        first = word_key(column[0])
        if not first or any(word_key(w) != first for w in column[1:]):
            break
        n += 1
    return n
