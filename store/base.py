"""What every store shares: the transaction, the no-transaction read, the one translation of
foreign exceptions, and rows mapped into records by name.

* :meth:`StoreBase._tx` opens a session, commits (or rolls back) and translates: a broken or
  refused connection is :class:`~core.errors.StorageUnavailable` (retryable), a refused write
  is :class:`~core.errors.ConflictError`. Every store method is one transaction.
* :meth:`StoreBase._read` runs one statement on a pooled connection in autocommit mode: no
  BEGIN/COMMIT around a single read (the pool resets the option on check-in). The hot reads use
  it with statements built once (see ``store.transcripts`` and ``store.usage`` for the
  measurements).
* :class:`RowMapper` builds record dataclasses from result rows by column *name* (labels equal
  to the dataclass's field names), resolved once per result shape, never by column position.

Times: every store method takes an optional ``now``; None means the database clock (``now()``),
which all workers share. Tests pass explicit times to stay deterministic.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar, cast

from sqlalchemy import ColumnElement, DateTime, Interval, Select, func, literal, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from core.errors import (
    ConflictError,
    InvalidState,
    NotFound,
    StatementTimeout,
    StorageError,
    StorageUnavailable,
)
from store.enums import SessionStatus
from store.models import Session

__all__ = [
    "RowMapper",
    "StoreBase",
    "labelled",
    "sql_interval",
    "sql_time",
    "touch_sessions",
    "translate",
    "upsert_space_row",
]

_R = TypeVar("_R")
AnySelect = Select[*tuple[Any, ...]]

# Postgres error classes that mean "the connection or server is gone, try later"
_UNAVAILABLE_SQLSTATES: Final = ("08", "57P01", "57P02", "57P03", "53300")
# query_canceled: the connection's statement_timeout (or a cancel request) stopped a statement
_CANCELED_SQLSTATE: Final = "57014"
# activity is recorded at most once per session every few seconds: finals of many tracks touch it
_ACTIVITY_GRANULARITY: Final = timedelta(seconds=5)


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state or "")


def translate(exc: BaseException) -> StorageError | None:
    """The storage error a foreign exception (SQLAlchemy, asyncpg, OS) stands for, or None when
    it is not one of ours to translate (a bug: let it propagate)."""
    if isinstance(exc, sa_exc.IntegrityError):
        return ConflictError("the database refused a conflicting write")
    if isinstance(exc, sa_exc.DBAPIError):
        if _sqlstate(exc) == _CANCELED_SQLSTATE:
            return StatementTimeout("the database cancelled a statement that ran too long")
        if (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or _sqlstate(exc).startswith(_UNAVAILABLE_SQLSTATES)
        ):
            return StorageUnavailable("database unavailable")
        return None
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return StorageUnavailable("database unavailable")
    return None


@contextmanager
def translated() -> Iterator[None]:
    """Foreign exceptions raised inside become this package's errors (``translate``)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def sql_time(now: datetime | None) -> ColumnElement[datetime]:
    """``now`` as a SQL timestamp, or the database clock when None."""
    if now is None:
        return func.now()
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return literal(now, DateTime(timezone=True))


def sql_interval(delta: timedelta) -> ColumnElement[timedelta]:
    return literal(delta, Interval())


def labelled(columns: Mapping[str, Any], prefix: str = "") -> list[Any]:
    """``columns`` (field name -> column) labelled with their field names (and ``prefix``)."""
    return [column.label(prefix + name) for name, column in columns.items()]


class RowMapper(Generic[_R]):
    """Builds ``cls`` (a dataclass) from rows whose column labels are its field names (after
    ``prefix``). Fields without a column keep their defaults. The labels are resolved to row
    indexes once per result shape (keywords would cost ~4 us a row on the transcript page)."""

    def __init__(self, cls: type[_R], prefix: str = "") -> None:
        self._cls = cls
        self._prefix = prefix
        self._fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        # builders per label set (a handful per record type), and the last result's
        self._shapes: dict[tuple[str, ...], Callable[[Row[Any]], _R]] = {}
        self._last_shape: object = None
        self._last_build: Callable[[Row[Any]], _R] = self._resolve

    def __call__(self, row: Row[Any]) -> _R:
        # rows of one result share one metadata object: the labels are looked up once per result
        if row._parent is not self._last_shape:
            return self._resolve(row)
        return self._last_build(row)

    def _resolve(self, row: Row[Any]) -> _R:
        keys = tuple(row._fields)
        build = self._shapes.get(keys)
        if build is None:
            build = self._shapes[keys] = self._builder(keys)
        self._last_shape, self._last_build = row._parent, build
        return build(row)

    def many(self, rows: Iterable[Row[Any]]) -> list[_R]:
        return [self(row) for row in rows]

    def _builder(self, keys: Sequence[str]) -> Callable[[Row[Any]], _R]:
        index = {key: i for i, key in enumerate(keys)}
        names = [name for name in self._fields if self._prefix + name in index]
        if not names:
            raise ValueError(f"no column of the row names a field of {self._cls!r}")
        positions = [index[self._prefix + name] for name in names]
        cls: Callable[..., _R] = self._cls
        if names == self._fields[: len(names)]:
            if len(positions) == 1:
                return lambda row: cls(row[positions[0]])
            pick = operator.itemgetter(*positions)
            return lambda row: cls(*pick(row))
        return lambda row: cls(**{name: row[i] for name, i in zip(names, positions, strict=True)})


async def touch_sessions(s: AsyncSession, session_ids: Iterable[int], now: datetime | None) -> None:
    """Record activity of sessions (the sweeper ends LIVE sessions without any for a while)."""
    ids = sorted(set(session_ids))
    if not ids:
        return
    at = sql_time(now)
    await s.execute(
        update(Session)
        .where(
            Session.id.in_(ids), Session.last_activity_at < at - sql_interval(_ACTIVITY_GRANULARITY)
        )
        .values(last_activity_at=at)
    )


async def lock_sessions(s: AsyncSession, session_ids: Iterable[int]) -> None:
    """Lock sessions' rows ``FOR NO KEY UPDATE`` in id order. Every transaction that writes a
    session and its usage or job rows takes the session first (as ``UPDATE sessions`` in
    ``end_session`` does), so two of them never wait for each other in a cycle."""
    ids = sorted(set(session_ids))
    if ids:
        await s.execute(
            select(Session.id)
            .where(Session.id.in_(ids))
            .order_by(Session.id)
            .with_for_update(key_share=True)
        )


def upsert_space_row(
    model: type[Any], space_id: str, values: Mapping[str, Any], now: datetime | None
) -> Insert:
    """INSERT ... ON CONFLICT (space_id) DO UPDATE of a one-row-per-space table (quotas,
    settings, retention): ``values`` and ``updated_at`` replace the row's."""
    stmt = pg_insert(model).values(space_id=space_id, **values, updated_at=sql_time(now))
    return stmt.on_conflict_do_update(
        index_elements=[model.space_id],
        set_={**{k: stmt.excluded[k] for k in values}, "updated_at": stmt.excluded.updated_at},
    )


class StoreBase:
    """The transaction and the no-transaction read every store uses (see the module docstring)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        engine = sessionmaker.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the sessionmaker must be bound to an AsyncEngine")
        # no BEGIN/COMMIT around a single read; the pool resets the option on check-in
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        with translated():
            async with self._sessionmaker.begin() as session:
                yield session

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read statement, without a transaction."""
        with translated():
            async with self._autocommit.connect() as conn:
                yield conn


ENDED_SESSION_STATES: Final = (SessionStatus.ENDED, SessionStatus.EXPIRED)


async def lock_active_session(
    s: AsyncSession, session_id: int, *columns: InstrumentedAttribute[Any]
) -> Row[Any]:
    """The session's ``columns``, its row locked ``FOR NO KEY UPDATE`` (a concurrent end or
    delete waits for this transaction, then sees what it wrote); :class:`NotFound` for an unknown
    session, :class:`InvalidState` for an ended or expired one."""
    row = (
        await s.execute(
            select(*columns, Session.status)
            .where(Session.id == session_id)
            .with_for_update(key_share=True)
        )
    ).first()
    if row is None:
        raise NotFound("session not found")
    if row.status in ENDED_SESSION_STATES:
        raise InvalidState("session is not active")
    return cast("Row[Any]", row)
