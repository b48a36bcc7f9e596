"""Prometheus metrics of one app, in a registry of its own (tests build many apps)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from store.enums import JobStatus

access_log = logging.getLogger("api.access")

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "transcriber_http_requests",
            "HTTP requests served, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "transcriber_http_request_duration_seconds",
            "Time to produce an HTTP response, by route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "transcriber_webhooks",
            "LiveKit webhook deliveries, by event and outcome.",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.exports = Counter(
            "transcriber_exports",
            "Transcript downloads by format and outcome: ok, cancelled (the client went away "
            "mid-export), too_large (over API_EXPORT_DOCX_MAX_SEGMENTS).",
            ["format", "outcome"],
            registry=self.registry,
        )
        self.sweeps = Counter(
            "transcriber_sessions_swept",
            "Sessions the lifecycle sweeper ended or expired.",
            ["outcome"],
            registry=self.registry,
        )
        self.retention_deleted = Counter(
            "transcriber_retention_deleted",
            "What the retention purge deleted: segments, and sessions whose text is all gone.",
            ["kind"],
            registry=self.registry,
        )
        # Counted in the database by the sweeper every sweep interval (every replica reports
        # the same figures: aggregate with max, not sum).
        self.jobs = Gauge(
            "transcriber_jobs",
            "Transcription jobs REQUESTED (no worker has taken them yet) and RUNNING, by status.",
            ["status"],
            registry=self.registry,
        )

        self.webhook_deliveries = Counter(
            "transcriber_webhook_deliveries",
            "Outbound webhook attempts, by result: delivered, retry (failed, to be retried), "
            "failed (the last attempt failed), superseded (the claim was lost meanwhile).",
            ["result"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "transcriber_webhook_delivery_duration_seconds",
            "Time of one outbound webhook attempt, until the receiver's status or the error.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        # Counted in the database by every delivery loop (aggregate with max, not sum).
        self.webhook_pending = Gauge(
            "transcriber_webhook_deliveries_pending",
            "Outbound webhook deliveries waiting: due now or backing off before a retry.",
            registry=self.registry,
        )

    def export_jobs(self, counts: Mapping[JobStatus, int]) -> None:
        """Set ``transcriber_jobs{status}`` from :meth:`store.jobs.JobStore.count_active`."""
        for status, n in counts.items():
            self.jobs.labels(status.value).set(n)

    def middleware(self) -> Middleware:
        """Outermost middleware: counts, times and logs every response, errors included. The
        log line names the route template, never the raw path or query (slugs and search
        text stay out of logs)."""

        @web.middleware
        async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500  # stays so if the request is cancelled or an error escapes
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                route = route_template(request)
                elapsed = time.perf_counter() - started
                self.requests.labels(request.method, route, str(status)).inc()
                self.duration.labels(request.method, route).observe(elapsed)
                if access_log.isEnabledFor(logging.INFO):
                    access_log.info(
                        "request",
                        extra={
                            "method": request.method,
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                        },
                    )

        return metrics_middleware

    def render(self) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def route_template(request: web.Request) -> str:
    """The matched route's template (``/api/sessions/{slug}``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
