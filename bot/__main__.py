"""``python -m bot`` / ``transcriber bot``: the LiveKit transcription worker.

Reads ``BotSettings`` and ``DatabaseSettings`` from the environment, opens the database
(``DATABASE_URL``, else the embedded server; migrations applied), loads the models once, serves
``/health``, ``/ready`` and ``/metrics`` on ``BOT_HTTP_PORT``, and runs the worker until SIGTERM
or Ctrl-C, then drains.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from bot import metrics as bot_metrics
from bot.config import BotSettings
from core import logs
from core.credentials import bearer_matches, secret_problems
from core.errors import TranscriberError

logger = logging.getLogger("bot")


def health_app(worker: object, metrics_token: str | None = None) -> web.Application:
    """``/health``, ``/ready`` and ``/metrics`` (behind ``Bearer <METRICS_TOKEN>`` when set)."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        ok = bool(getattr(worker, "ready", False))
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        if metrics_token and not bearer_matches(
            request.headers.get("Authorization"), metrics_token
        ):
            return web.json_response(
                {"error": {"code": "unauthorized", "message": "metrics need a bearer token"}},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(settings: BotSettings, stop: asyncio.Event) -> None:
    from bot.config import build_engine, build_engines
    from bot.pipeline.track_diarization import LiveDiarization
    from bot.spool import FinalSpool, running
    from bot.worker import Worker
    from store.database import open_database
    from store.settings import DatabaseSettings

    bot_metrics.publish_price(
        settings.transcription_cost_per_minute, settings.transcription_currency
    )
    engine = build_engine(settings)
    async with open_database(DatabaseSettings(), application_name="transcriber-bot") as db:
        spool = FinalSpool(db.store.transcripts, settings.spool_dir, settings.worker_id)
        async with running(spool):
            engines = build_engines(settings, engine)
            diarization = LiveDiarization(settings.diarization_options())
            if settings.diarization_preload and (loading := diarization.preload()) is not None:
                await asyncio.wrap_future(loading)
            worker = Worker(
                settings, db.store, engine, spool, db.url, engines=engines, diarization=diarization
            )
            token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
            runner = web.AppRunner(health_app(worker, token), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, settings.bot_http_host, settings.bot_http_port)
            await site.start()
            logger.info(
                "worker started",
                extra={"worker_id": settings.worker_id, "http_port": settings.bot_http_port},
            )
            try:
                await worker.run(stop)
            finally:
                await runner.cleanup()
                await engines.aclose()
                diarization.close()
    logger.info("worker stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="transcriber bot", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.parse_args(argv)
    try:
        settings = BotSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(
            f"transcriber bot: invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}",
            file=sys.stderr,
        )
        return 2
    problems = secret_problems(settings.secrets(), dev_mode=settings.transcriber_dev_mode)
    if problems:
        for problem in problems:
            print(f"transcriber bot: {problem}", file=sys.stderr)
        return 2
    logs.configure("INFO", settings.log_format)
    if settings.transcriber_dev_mode:
        logger.warning("development mode: weak and well-known secrets are accepted")
    # The LiveKit SDK logs every signalling step at INFO.
    logging.getLogger("livekit").setLevel(logging.WARNING)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    from core.errors import StorageError

    try:
        asyncio.run(run())
    except TranscriberError as exc:
        print(f"transcriber bot: {exc}", file=sys.stderr)
        return 2
    except (StorageError, OSError) as exc:  # e.g. the database is unreachable at start
        print(f"transcriber bot: database unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
