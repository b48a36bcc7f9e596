"""The pure parts of ``bench.peers``: peer messages as display states, phrase latency from those
states, word stability, ratios. No peer, model or audio needed."""

import math

import pytest

from bench.engine import StreamRun, phrase_latencies
from bench.peers import (
    GAP_S,
    Clip,
    TimedWord,
    clip_text,
    committed_text,
    display_words,
    engine_states,
    new_captions,
    parse_clock,
    ratios,
    stable_times,
    whisper_live_state,
    wlk_state,
    word_stability,
)
from bot.pipeline.types import Caption


def cap(uid: str, text: str, final: bool, start_s: float, end_s: float) -> Caption:
    return Caption(uid, text, final, round(start_s * 1000), round(end_s * 1000), "en", 0.0)


def test_engine_states_show_the_latest_caption_of_each_utterance_in_time_order() -> None:
    captions = [
        (1.0, cap("u2", "later", False, 5, 6)),
        (1.5, cap("u1", "hello", False, 0, 1)),
        (2.0, cap("u1", "hello world", True, 0, 2)),
        (2.5, cap("u2", "", True, 5, 6)),  # a rejected decode: the partial goes away
    ]
    states = engine_states(captions)
    assert [t for t, _ in states] == [1.0, 1.5, 2.0, 2.5]
    assert [c.text for c in states[1][1]] == ["hello", "later"]
    assert [c.text for c in states[2][1]] == ["hello world", "later"]
    assert [(c.text, c.is_final) for c in states[3][1]] == [("hello world", True)]


def wl(start: float, end: float, text: str, completed: bool) -> dict[str, object]:
    return {"start": f"{start:.3f}", "end": f"{end:.3f}", "text": text, "completed": completed}


def test_whisper_live_messages_keep_older_completed_segments_and_replace_the_rest() -> None:
    state = whisper_live_state((), [wl(0, 2, " Ask not", False)])
    assert [(c.text, c.is_final) for c in state] == [("Ask not", False)]
    # The open segment splits: its first part completed, the rest still open.
    state = whisper_live_state(
        state, [wl(0, 2, " Ask not what", True), wl(2, 4, " your country", False)]
    )
    assert [(c.text, c.is_final) for c in state] == [
        ("Ask not what", True),
        ("your country", False),
    ]
    # A later message whose window starts after the first segment keeps that one as it was.
    state = whisper_live_state(state, [wl(2, 4, " your country can", True), wl(4, 5, " do", False)])
    assert committed_text(state) == "Ask not what your country can"
    assert display_words(state) == ["ask", "not", "what", "your", "country", "can", "do"]
    assert state[0].start_ms == 0 and state[1].end_ms == 4000


def test_wlk_lines_are_committed_and_the_buffer_spans_to_the_processed_audio() -> None:
    message = {
        "lines": [
            {"speaker": 1, "text": "Ask not", "start": "0:00:01.00", "end": "0:00:02.50"},
            {"speaker": -2, "text": "", "start": "0:00:02.50", "end": "0:00:03.00"},
        ],
        "buffer_transcription": " what your",
        "remaining_time_transcription": 1.5,
    }
    state = wlk_state(message, fed_s=5.0)
    assert [(c.text, c.is_final, c.start_ms, c.end_ms) for c in state] == [
        ("Ask not", True, 1000, 2500),
        ("what your", False, 2500, 3500),
    ]
    assert wlk_state({"lines": [], "buffer_transcription": ""}, 3.0) == ()


def test_parse_clock() -> None:
    assert parse_clock("1:02:03.25") == pytest.approx(3723.25)
    assert parse_clock("0:00:07.10") == pytest.approx(7.1)
    assert parse_clock(4.5) == 4.5


def test_phrase_latency_from_peer_messages() -> None:
    """A phrase's final latency is when a committed segment first covers its last word; first
    display is any text covering it: read from the display states a peer's messages make."""
    words = [(1.0, 1.4), (1.5, 2.0), (3.0, 3.5)]  # two phrases: pause of 1.0 s after "2.0"
    states = []
    for t, segments in [
        (2.6, [wl(0.9, 2.1, "one two", False)]),
        (3.9, [wl(0.9, 2.1, "one two", False), wl(2.8, 3.6, "three", False)]),
        (4.7, [wl(0.9, 2.1, "one two", True), wl(2.8, 3.6, "three", False)]),
        (6.0, [wl(0.9, 2.1, "one two", True), wl(2.8, 3.6, "three", True)]),
    ]:
        prev = states[-1][1] if states else ()
        states.append((t, whisper_live_state(prev, segments)))
    first, final = phrase_latencies(StreamRun(captions=new_captions(states)), words)
    assert first == pytest.approx([2.6 - 2.0, 3.9 - 3.5])
    assert final == pytest.approx([4.7 - 2.0, 6.0 - 3.5])


def test_stable_times_are_when_the_prefix_up_to_a_word_last_changed() -> None:
    snapshots = [
        (1.0, ["ask"]),
        (2.0, ["ask", "knot"]),
        (3.0, ["ask", "not", "what"]),
        (4.0, ["ask", "not", "watt", "your"]),
        (5.0, ["ask", "not", "what", "your"]),
    ]
    assert stable_times(snapshots) == [1.0, 3.0, 5.0, 5.0]
    assert stable_times([]) == []


def test_word_stability_maps_offline_words_to_the_final_transcript() -> None:
    states = [
        (2.0, (cap("a", "Ask knot", False, 0, 2),)),
        (3.0, (cap("a", "Ask not.", True, 0, 2),)),
        (4.5, (cap("a", "Ask not.", True, 0, 2), cap("b", "what", False, 3, 4))),
    ]
    words = [TimedWord(" Ask", 0.5, 1.0), TimedWord(" not", 1.2, 1.8), TimedWord(" what", 3, 3.6)]
    # "ask" never changed (shown at 2.0, fed at 1.0 + offset 0.5); "not" settled at 3.0.
    assert word_stability(states, words, offset_s=0.5) == pytest.approx([0.5, 0.7, 0.4])
    # A word the system never got is left out rather than counted as stable.
    missing = [*words[:2], TimedWord(" country", 5, 5.5)]
    assert len(word_stability(states, missing, offset_s=0.5)) == 2


def test_ratios_are_ours_over_the_peer() -> None:
    got = ratios({"a": 1.0, "b": 0.1, "c": 2.0}, {"a": 4.0, "b": 0.0, "c": math.nan}, "abc")
    assert got["a"] == 0.25
    assert math.isnan(got["b"]) and math.isnan(got["c"])


def test_clip_text_takes_the_committed_captions_inside_a_clip() -> None:
    clip = Clip("jfk", 3.0, 12.0, "ref")
    state = (
        cap("a", "before", True, 1.0, 1.5),
        cap("b", "ask not", True, 2.8, 4.0),
        cap("c", "open", False, 5.0, 6.0),
        cap("d", "for you", True, 11.0, 12.0 + GAP_S / 2),
        cap("e", "next", True, 14.5, 15.0),
    )
    assert clip_text(state, clip) == "ask not for you"


def test_word_stability_maps_each_clip_to_its_own_text_when_the_text_repeats() -> None:
    """Sonnet 1 opens both sonnet items: the first reading's words must not map to the second
    reading's, which settled a minute later."""
    states = [
        (3.0, (cap("a", "from fairest creatures", True, 0, 2),)),
        (
            63.0,
            (
                cap("a", "from fairest creatures", True, 0, 2),
                cap("b", "from fairest creatures we desire", True, 60, 62),
            ),
        ),
    ]
    words = [
        TimedWord(" From", 0.0, 0.5),
        TimedWord(" fairest", 0.6, 1.0),
        TimedWord(" creatures", 1.1, 2.0),
        TimedWord(" we", 2.1, 2.5),  # the first reading lost "we"
        TimedWord(" From", 60.0, 60.5),
        TimedWord(" fairest", 60.6, 61.0),
        TimedWord(" creatures", 61.1, 61.5),
        TimedWord(" we", 61.6, 61.8),
        TimedWord(" desire", 61.9, 62.0),
    ]
    got = word_stability(states, words, 0.0, groups=[(0, 30), (30, 90)])
    assert got == pytest.approx([2.5, 2.0, 1.0, 2.5, 2.0, 1.5, 1.2, 1.0])
