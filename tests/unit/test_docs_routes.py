"""Every API route the docs name exists, with the method they name (routes in docs vs code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.app import operations

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "api" / "README.md", REPO / "devserver" / "README.md",
        REPO / ".env.example", REPO / "bot" / "demo.py"]  # fmt: skip
PATH = re.compile(r"(?<![\w.])/(?:api|webhooks)/[A-Za-z0-9_{}./-]*[A-Za-z0-9_}]")
# any path on the API's default port, e.g. a webhook URL given to a LiveKit server
API_URL_PATH = re.compile(r"https?://[\w.-]+:8080(/[A-Za-z0-9_{}./-]*[A-Za-z0-9_}])")
METHOD_PATH = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/(?:api|webhooks)/[A-Za-z0-9_{}./-]*)")


def known() -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for op in operations():
        routes.setdefault(re.sub(r"\{[^}]+\}", "{}", op.path), set()).add(op.method)
    return routes


def normal(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path.split("?")[0].rstrip("/."))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_routes_named_in_the_docs_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    routes = known()
    named = set(PATH.findall(text)) | set(API_URL_PATH.findall(text))
    missing = sorted(p for p in named if normal(p) not in routes)
    assert not missing, f"{doc.name} names routes the API does not have: {missing}"
    wrong = sorted(
        f"{m} {p}" for m, p in METHOD_PATH.findall(text) if m not in routes.get(normal(p), {m})
    )
    assert not wrong, f"{doc.name} names a method the route does not take: {wrong}"
