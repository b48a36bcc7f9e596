from __future__ import annotations

from bot.pipeline.agreement import StablePrefix, word_key


def test_words_become_stable_when_two_decodes_agree() -> None:
    sp = StablePrefix(2)
    assert sp.update(["and", "so"]) == ([], ["and", "so"])
    # stable words take the spelling of the latest decode that agreed on them
    assert sp.update(["And", "so", "my"]) == (["And", "so"], ["my"])
    stable, tail = sp.update(["And", "so", "my", "fellow", "Americans"])
    assert stable == ["And", "so", "my"] and tail == ["fellow", "Americans"]


def test_stable_words_are_never_taken_back() -> None:
    sp = StablePrefix(2)
    sp.update(["ask", "what", "you"])
    sp.update(["ask", "what", "you", "can"])
    # the decoder changes its mind about an already stable word
    stable, tail = sp.update(["Ask", "what", "we", "can", "do"])
    assert [w.lower() for w in stable[:3]] == ["ask", "what", "you"]
    assert "do" in tail


def test_disagreement_keeps_words_tentative() -> None:
    sp = StablePrefix(2)
    sp.update(["like", "you", "are"])
    stable, tail = sp.update(["watch", "your", "country"])
    assert stable == [] and tail == ["watch", "your", "country"]


def test_agreement_of_three() -> None:
    sp = StablePrefix(3)
    sp.update(["a", "b"])
    assert sp.update(["a", "b", "c"])[0] == []
    assert sp.update(["a", "b", "c", "d"])[0] == ["a", "b"]


def test_word_key_ignores_case_and_punctuation() -> None:
    assert word_key("Americans,") == word_key("americans") == "americans"
    assert word_key("Ребят,") == "ребят"
