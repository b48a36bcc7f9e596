"""Fixtures: a network namespace, a dev server running inside it, and a webhook sink.

The SDK clients run in this (root) namespace and reach the server over the veth pair, the
only non-loopback path they have to it; nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devserver.launcher import DevServerProcess
from tests.support.livekit import start_devserver
from tests.support.netns import VethNamespace, unavailable_reason, veth_namespace

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, slots=True)
class Webhook:
    authorization: str
    content_type: str
    body: str


class WebhookSink:
    """An HTTP server (in a thread) on the root side of the veth pair that keeps what it gets."""

    def __init__(self, host: str) -> None:
        self._received: list[Webhook] = []
        self._cond = threading.Condition()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                with sink._cond:
                    sink._received.append(
                        Webhook(
                            authorization=self.headers.get("Authorization", ""),
                            content_type=self.headers.get("Content-Type", ""),
                            body=body,
                        )
                    )
                    sink._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, predicate: Callable[[Webhook], bool], timeout_s: float = 30.0) -> Webhook:
        """Block until a webhook matching ``predicate`` arrived (use via asyncio.to_thread)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for hook in self._received:
                    if predicate(hook):
                        return hook
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching webhook arrived")
                self._cond.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def netns() -> Iterator[VethNamespace]:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    with veth_namespace("lkt") as namespace:
        yield namespace


@pytest.fixture(scope="session")
def webhook_sink(netns: VethNamespace) -> Iterator[WebhookSink]:
    sink = WebhookSink(netns.host_address)
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def devserver(netns: VethNamespace, webhook_sink: WebhookSink) -> Iterator[DevServerProcess]:
    """The shared server: tests isolate themselves by using their own room names."""
    server = start_devserver(
        netns,
        "--webhook-url",
        webhook_sink.url,
        "--departure-timeout",
        "1",
        "--empty-timeout",
        "60",
    )
    yield server
    server.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, DevServerProcess):
                report.sections.append(("dev server log (tail)", value.log_tail(80)))
