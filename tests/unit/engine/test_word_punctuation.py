"""Punctuation is never a timed word of its own (the JSON export lists words with times)."""

from __future__ import annotations

from bot.pipeline.asr import RecognizedWord, merge_punctuation


def w(text: str, start: float, end: float) -> RecognizedWord:
    return RecognizedWord(text=text, start_s=start, end_s=end, probability=0.9)


def test_trailing_punctuation_joins_the_word_before() -> None:
    merged = merge_punctuation(
        [w("Ask", 0.0, 0.3), w("not", 0.3, 0.6), w(".", 0.6, 0.7), w("What", 1.0, 1.2)]
    )
    assert [x.text for x in merged] == ["Ask", "not.", "What"]
    assert merged[1].end_s == 0.7 and merged[1].start_s == 0.3


def test_leading_marks_join_the_word_after_and_a_lone_mark_goes() -> None:
    merged = merge_punctuation([w("«", 0.0, 0.1), w("Да", 0.1, 0.4), w("»,", 0.4, 0.5)])
    assert [x.text for x in merged] == ["«Да»,"]
    assert merge_punctuation([w(".", 0.0, 0.1)]) == ()
    assert [x.text for x in merge_punctuation([w("...", 0, 0.1), w("so", 0.1, 0.3)])] == ["...so"]
