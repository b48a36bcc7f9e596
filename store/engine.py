"""Engine and session factories. No module-level engine: callers build one and pass it down."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import NullPool

__all__ = [
    "asyncpg_dsn",
    "create_engine",
    "create_sessionmaker",
    "normalize_database_url",
    "redact_url",
]

_ASYNC_DRIVER = "postgresql+asyncpg"


def normalize_database_url(url: str | URL) -> URL:
    """Accept ``postgres://``, ``postgresql://`` or ``postgresql+<driver>://``; use asyncpg."""
    parsed = make_url(str(url)) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend not in {"postgresql", "postgres"}:
        raise ValueError("DATABASE_URL must be a PostgreSQL URL")
    return parsed.set(drivername=_ASYNC_DRIVER)


def asyncpg_dsn(url: str | URL) -> str:
    """The libpq-style DSN asyncpg.connect() takes, from a SQLAlchemy URL."""
    parsed = normalize_database_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str | URL) -> str:
    """The URL with its password masked, for logs and error messages."""
    return normalize_database_url(url).render_as_string(hide_password=True)


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    echo: bool = False,
    pool: bool = True,
    application_name: str = "transcriber",
    statement_timeout_ms: int = 0,
) -> AsyncEngine:
    """An asyncpg engine. ``pool=False`` opens a connection per checkout (tests, one-shot tools).

    JIT is switched off per connection: our queries are short, and JIT compilation of an
    aggregate over many rows costs tens of milliseconds that the reports' latency budget lacks.

    SQL parameters are hidden from error messages and the ``echo`` log (``hide_parameters``):
    they are transcript text, identities, names and request data (search text, slugs, cursors),
    and an error's message ends up in tracebacks. (asyncpg's own messages for a value it cannot
    encode still quote it: log errors with ``core.logs.error_fields``, not their messages.)
    ``statement_timeout_ms`` (> 0) makes the server cancel any statement that runs longer
    (SQLSTATE 57014, translated to :class:`~core.errors.StatementTimeout` by ``store.base``).
    """
    server_settings = {"application_name": application_name, "jit": "off"}
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(int(statement_timeout_ms))
    connect_args = {"server_settings": server_settings}
    if not pool:
        return _create_async_engine(
            normalize_database_url(url),
            poolclass=NullPool,
            echo=echo,
            hide_parameters=True,
            connect_args=connect_args,
        )
    return _create_async_engine(
        normalize_database_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        echo=echo,
        hide_parameters=True,
        connect_args=connect_args,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
