"""Search results as the API shows them: the configuration a language picks, escaped snippets
with <mark> tags, links to the transcript page that starts at a hit."""

from __future__ import annotations

import pytest

from api.routes.search import snippet_html, transcript_url
from store.records import SearchHit, SegmentCursor
from store.transcripts import HIGHLIGHT_START, HIGHLIGHT_STOP, search_config


@pytest.mark.parametrize(
    ("session", "segment", "config"),
    [
        ("en", "ru", "english"),  # the session's language wins
        ("ru-RU", None, "russian"),
        ("EN_us", None, "english"),
        (None, "ru", "russian"),  # no session language: the detected one
        (None, "en", "english"),
        (None, "de", "simple"),
        (None, None, "simple"),
        ("enx", None, "simple"),  # a prefix of another code is not English
    ],
)
def test_search_config(session: str | None, segment: str | None, config: str) -> None:
    assert search_config(session, segment) == config


def test_snippet_is_escaped_then_marked() -> None:
    start, stop = HIGHLIGHT_START, HIGHLIGHT_STOP
    headline = f'a <b> & "c" {start}budget{stop} ... {start}x{stop}'
    assert snippet_html(headline) == (
        "a &lt;b&gt; &amp; &quot;c&quot; <mark>budget</mark> ... <mark>x</mark>"
    )


def test_link_starts_the_page_at_the_hit() -> None:
    hit = SearchHit(
        segment_id=42, session_id=1, session_slug="abc", session_title="", start_ms=9000,
        end_ms=9500, text="t", language="en", speaker_label="", participant_identity=None,
        participant_name=None, rank=0.1, headline="t",
    )  # fmt: skip
    url = transcript_url(hit)
    path, cursor = url.split("?cursor=")
    assert path == "/api/sessions/abc/transcript"
    # the keyset cursor just before (9000, 42): the page's first row is the hit
    assert SegmentCursor.decode(cursor) == SegmentCursor(9000, 41)
