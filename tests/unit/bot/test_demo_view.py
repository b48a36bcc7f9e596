"""The demo's live view reads like a meeting client: a live line per speaker, finals scroll."""

from __future__ import annotations

import io
import re

from bot.demo import LiveCaptions


def screen(written: str) -> list[str]:
    """What a terminal shows after ``written`` (the few ANSI moves the view uses)."""
    lines: list[str] = [""]
    row = 0
    for token in re.findall(r"\x1b\[\d*F|\x1b\[J|\r|\n|[^\x1b\r\n]+", written):
        if token.endswith("F"):
            row = max(0, row - int(token[2:-1] or 1))
        elif token == "\x1b[J":
            del lines[row + 1 :]
            lines[row] = ""
        elif token == "\r":
            lines[row] = ""  # the view only returns to a line to rewrite it
        elif token == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        else:
            lines[row] += token
    return [line for line in lines if line]


def view() -> tuple[LiveCaptions, io.StringIO]:
    out = io.StringIO()
    captions = LiveCaptions(tty=True, out=out)
    captions.names.update(alice="Alice", bob="Bob")
    return captions, out


def test_two_people_talking_at_once_each_have_a_line() -> None:
    captions, out = view()
    captions.show("alice", "unless a", False)
    captions.show("bob", "and so", False)
    captions.show("alice", "unless a system", False)
    captions.show("bob", "and so my fellow", False)
    assert screen(out.getvalue()) == ["   Alice… unless a system", "     Bob… and so my fellow"]


def test_a_final_scrolls_up_with_the_name_and_the_other_line_stays_live() -> None:
    captions, out = view()
    captions.show("alice", "unless a", False)
    captions.show("bob", "and so", False)
    captions.show("alice", "Unless a system is established.", True)
    captions.show("bob", "and so my fellow", False)
    assert screen(out.getvalue()) == [
        "   Alice: Unless a system is established.",
        "     Bob… and so my fellow",
    ]
    captions.show("bob", "And so, my fellow Americans.", True)
    assert screen(out.getvalue()) == [
        "   Alice: Unless a system is established.",
        "     Bob: And so, my fellow Americans.",
    ]
    assert captions.finals == [
        "Alice: Unless a system is established.",
        "Bob: And so, my fellow Americans.",
    ]


def test_without_a_terminal_every_caption_is_a_plain_line() -> None:
    out = io.StringIO()
    captions = LiveCaptions(tty=False, out=out)
    captions.names["bob"] = "Bob"
    captions.show("bob", "and so", False)
    captions.show("bob", "And so.", True)
    assert out.getvalue() == "     Bob… and so\n     Bob: And so.\n"
    assert "\x1b" not in out.getvalue()
