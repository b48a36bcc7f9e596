"""``python -m api`` / ``transcriber api``: serve the HTTP API, run the lifecycle sweeper and the
outbound webhook delivery loop.

Builds the one settings object, resolves the database (``DATABASE_URL`` or the embedded server),
applies migrations, serves until SIGTERM/SIGINT, then stops cleanly: the listener closes, in-flight
requests finish, the sweeper and the delivery loop are cancelled (a delivery cut mid-way is
attempted again after its claim's lease: see ``api.webhooks``), the engine and (if ours) the
embedded server stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from api.app import create_app
from api.context import CONTEXT
from api.server import GuardedSite, make_runner
from api.settings import ApiSettings
from api.sweeper import run_sweeper
from api.webhooks import WebhookDispatcher
from core import logs
from core.credentials import secret_problems
from store.database import open_database
from store.settings import DatabaseSettings

logger = logging.getLogger("api")


async def serve(settings: ApiSettings, db_settings: DatabaseSettings, *, migrate: bool) -> None:
    async with open_database(
        db_settings,
        migrate=migrate,
        application_name="transcriber-api",
        statement_timeout_ms=settings.db_statement_timeout_ms,
    ) as database:
        app = create_app(settings, database.sessionmaker)
        runner = make_runner(app, settings)
        await runner.setup()
        stack = contextlib.AsyncExitStack()
        try:
            site = GuardedSite(
                runner,
                settings.api_host,
                settings.api_port,
                max_connections=settings.api_max_connections,
            )
            await site.start()
            logger.info(
                "api listening", extra={"host": settings.api_host, "port": settings.api_port}
            )
            ctx = app[CONTEXT]
            dispatcher = await stack.enter_async_context(
                WebhookDispatcher(ctx.store, settings, ctx.metrics)
            )
            sweeper = asyncio.create_task(
                run_sweeper(ctx.store, settings, ctx.metrics), name="session-sweeper"
            )
            delivery = asyncio.create_task(dispatcher.run(), name="webhook-delivery")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
                logger.info("stopping")
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                for task in (sweeper, delivery):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await stack.aclose()
            await runner.cleanup()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="transcriber api", description="Run the HTTP API.")
    parser.add_argument("--host", help="listen address (default: API_HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="listen port (default: API_PORT or 8080)")
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations at startup"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)  # readable until the settings say otherwise

    settings = ApiSettings()
    logs.configure(args.log_level, settings.log_format)
    if args.host is not None:
        settings = settings.model_copy(update={"api_host": args.host})
    if args.port is not None:
        settings = settings.model_copy(update={"api_port": args.port})
    if settings.api_jwt_secret is None and settings.api_admin_key is None:
        print(
            "transcriber api: set API_JWT_SECRET and/or API_ADMIN_KEY (no caller could sign in)",
            file=sys.stderr,
        )
        return 2
    problems = secret_problems(settings.secrets(), dev_mode=settings.transcriber_dev_mode)
    if problems:
        for problem in problems:
            print(f"transcriber api: {problem}", file=sys.stderr)
        return 2
    if settings.transcriber_dev_mode:
        logger.warning("development mode: weak and well-known secrets are accepted")
    # DATABASE_URL is read by both settings objects; the database side also reads pool sizes
    db_settings = DatabaseSettings()
    try:
        asyncio.run(serve(settings, db_settings, migrate=not args.no_migrate))
    except KeyboardInterrupt:
        pass
    except Exception:
        logger.exception("api stopped on an error")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
