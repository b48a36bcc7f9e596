"""Property-based fuzzing: schemathesis over the app's own OpenAPI document, and signed webhooks.

A real server (127.0.0.1, ephemeral port, real PostgreSQL) runs in a thread; schemathesis
generates requests from ``/api/openapi.json`` (positive and negative data) with several kinds of
credentials, and every response must be a non-5xx that conforms to the document (status code,
content type, body schema). Session-scoped operations are aimed at seeded sessions half of the
time, so they get past the 404 into the handlers. The number of examples is bounded
(``FUZZ_EXAMPLES`` per operation and mode) to keep the run within a minute or two.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from livekit.api import AccessToken
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.server import GuardedSite, make_runner
from store.engine import create_engine, create_sessionmaker
from store.stores import Store
from tests.integration.api.conftest import api_settings
from tests.integration.api.support import (
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    admin,
    seed_transcript,
    seed_usage,
    user,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
SPACE = "fuzz-space"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class LiveServer:
    """The app on a real socket, served from its own event loop in a thread."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.loop = asyncio.new_event_loop()
        self.base_url = ""
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        self.engine = create_engine(self.database_url, pool_size=5, max_overflow=5)
        sessionmaker = create_sessionmaker(self.engine)
        self.repo = Store(sessionmaker)
        # rate limits off: the fuzzer's hundreds of exports per operation would mostly be 429s
        settings = api_settings(
            max_tracks_per_session=4,
            max_tracks_per_user=4,
            api_rate_search_per_minute=0,
            api_rate_export_per_minute=0,
        )
        app = create_app(settings, sessionmaker)
        # the server of python -m api: JSON errors for malformed requests (the fuzzer sends
        # request lines past aiohttp's 8190 bytes), header timeout, connection cap
        self.runner = make_runner(app, settings)
        await self.runner.setup()
        site = GuardedSite(
            self.runner, "127.0.0.1", 0, max_connections=settings.api_max_connections
        )
        await site.start()
        self.base_url = f"http://127.0.0.1:{site.bound_port}"

    def reseed(self) -> list[str]:
        """Fresh sessions for the next operation (an earlier one may have ended or deleted them):
        one just created, one LIVE with participants, a transcript and usage."""
        return asyncio.run_coroutine_threadsafe(self._reseed(), self.loop).result(60)

    async def _reseed(self) -> list[str]:
        created = await self.repo.sessions.create_session(space_id=SPACE, created_by="fuzzer")
        live = await self.repo.sessions.create_session(
            space_id=SPACE, created_by="fuzzer", title="Живая"
        )
        await seed_transcript(
            self.repo,
            live,
            [
                ("fuzzer", "Фаззер", 0, 1200, "Привет, это проверка"),
                ("guest", "Guest", 1300, 2500, "Hello <b>&</b> --> world"),
            ],
        )
        await seed_usage(self.repo, live, "guest", "75.5")
        return [created.slug, live.slug]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.engine.dispose()


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url) as live:
        yield live


CREDENTIALS = [
    user("fuzzer", SPACE, "member"),
    user("fuzz-admin", SPACE, "admin"),
    admin(SPACE, "fuzzer"),
    admin(),
]

_FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure quickly
    suppress_health_check=list(HealthCheck),
)


def test_openapi_fuzz_finds_no_server_errors(server: LiveServer) -> None:
    document = requests.get(f"{server.base_url}/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    http = requests.Session()
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is a valid OpenAPI 3.1 schema
        operations.append(result.ok())
    assert len(operations) == sum(len(item) for item in document["paths"].values())
    for operation in operations:
        slugs = server.reseed()
        strategies = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
            if operation.path in ("/api/usage", "/api/usage/summary"):
                # random dates rarely form a valid range (<= 366 days); aim some cases at one
                valid = {"from": "2026-01-01", "to": "2026-12-31"}
                strategies.append(operation.as_strategy(generation_mode=mode, query=valid))
            if operation.path == "/api/search":
                # words of the seeded transcript: matches, snippets and links, not only misses
                for q in ("hello world", "проверка", '"hello world" -x'):
                    strategies.append(operation.as_strategy(generation_mode=mode, query={"q": q}))
            if "{slug}" in operation.path:
                strategies += [
                    operation.as_strategy(generation_mode=mode, path_parameters={"slug": slug})
                    for slug in slugs
                ]

        @_FUZZ_SETTINGS
        @given(
            case=st.one_of(strategies),
            credentials=st.sampled_from(CREDENTIALS),
            keep_generated_auth=st.integers(0, 3).map(lambda n: n == 0),
        )
        def run(case: Any, credentials: dict[str, str], keep_generated_auth: bool) -> None:
            if not keep_generated_auth and case.headers:
                # schemathesis fills the documented security headers with junk; keep that for a
                # quarter of the cases (401 paths) and send valid credentials otherwise
                for name in ("Authorization", "X-Api-Key"):
                    case.headers.pop(name, None)
            case.call_and_validate(
                base_url=server.base_url, session=http, headers=credentials, checks=CHECKS
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


@_FUZZ_SETTINGS
@given(
    event=st.sampled_from(["participant_joined", "participant_left"])
    | st.sampled_from(["participant_joined", "room_finished", "room_started", ""])
    | st.text(max_size=30),
    room=st.one_of(st.none(), st.none(), st.sampled_from(["", "x" * 80]), st.text(max_size=70)),
    identity=st.sampled_from(["alice", "Борис"]) | st.text(max_size=300),
    name=st.text(max_size=300),
    kind=st.sampled_from([0, 0, 3, 4]) | st.integers(min_value=-5, max_value=20),
    created_at=st.integers(min_value=-(2**40), max_value=2**40),
    extra=st.dictionaries(st.text(max_size=10), st.text(max_size=10) | st.integers(), max_size=3),
)
def _signed_webhooks(
    base_url: str,
    slugs: list[str],
    http: requests.Session,
    event: str,
    room: str | None,
    identity: str,
    name: str,
    kind: int,
    created_at: int,
    extra: dict[str, Any],
) -> None:
    target = slugs[kind % len(slugs)] if room is None else room  # None: a seeded session
    payload: dict[str, Any] = {
        **extra,
        "event": event,
        "id": "EV_fuzz",
        "createdAt": str(created_at),
        "room": {"name": target},
    }
    if identity or name:
        payload["participant"] = {"identity": identity, "name": name, "kind": kind}
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET).with_sha256(digest).to_jwt()
    response = http.post(
        f"{base_url}/webhooks/livekit",
        data=body,
        headers={"Authorization": token, "Content-Type": "application/webhook+json"},
        timeout=30,
    )
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400), response.text


def test_signed_webhook_fuzz_finds_no_server_errors(server: LiveServer) -> None:
    """Correctly signed but arbitrary events: parsed or refused (400), never a 5xx."""
    _signed_webhooks(server.base_url, server.reseed(), requests.Session())


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


_BIG_INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64, 10**20]),
)
# what a decoded transcript cursor ("start_ms:id") may hold: numbers of any size, or junk
_SEGMENT_CURSORS = st.one_of(
    st.tuples(_BIG_INTS, _BIG_INTS).map(lambda p: f"{p[0]}:{p[1]}"),
    st.text(max_size=40),
)
_OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: f"{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
)
# a decoded session cursor ("<ISO time>|id"): any calendar time and offset, ids of any size
_SESSION_CURSORS = st.one_of(
    st.tuples(st.datetimes(), _OFFSETS, _BIG_INTS).map(
        lambda t: f"{t[0].isoformat()}{t[1]}|{t[2]}"
    ),
    st.tuples(st.datetimes(), _BIG_INTS).map(lambda t: f"{t[0].isoformat()}|{t[1]}"),
    st.text(max_size=40),
)


@_FUZZ_SETTINGS
@given(
    segment_cursor=_SEGMENT_CURSORS,
    session_cursor=_SESSION_CURSORS,
    q=st.one_of(st.none(), st.just("проверка")),
    date_from=st.one_of(st.none(), st.dates()),
    date_to=st.one_of(st.none(), st.dates()),
)
def _decoded_values(
    base_url: str,
    slug: str,
    http: requests.Session,
    segment_cursor: str,
    session_cursor: str,
    q: str | None,
    date_from: Any,
    date_to: Any,
) -> None:
    headers = user("fuzzer", SPACE, "admin")
    params: dict[str, str] = {"cursor": _b64(segment_cursor)}
    if q is not None:
        params["q"] = q
    response = http.get(
        f"{base_url}/api/sessions/{slug}/transcript", params=params, headers=headers, timeout=30
    )
    assert response.status_code in (200, 422), response.text
    response = http.get(
        f"{base_url}/api/sessions",
        params={"cursor": _b64(session_cursor)},
        headers=headers,
        timeout=30,
    )
    assert response.status_code in (200, 422), response.text
    dates = {"from": date_from, "to": date_to}
    response = http.get(
        f"{base_url}/api/usage",
        params={k: v.isoformat() for k, v in dates.items() if v is not None},
        headers=headers,
        timeout=30,
    )
    assert response.status_code in (200, 422), response.text


def test_decoded_cursor_and_date_values_find_no_server_errors(server: LiveServer) -> None:
    """Cursors are opaque base64 to clients, but what they decode to is input too: numbers past
    BIGINT, times whose offset leaves the calendar, report dates at its end are 422, never 5xx."""
    _decoded_values(server.base_url, server.reseed()[1], requests.Session())
