"""``LISTEN``/``NOTIFY`` for transcription jobs.

The job store sends ``pg_notify(JOB_CHANNEL, payload)`` in the transaction that requests, releases
or stops a job, so listeners hear of it only once it is committed. A notification is a hint: a
worker that missed one (disconnected, queue full) still finds the job on its next periodic claim.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Final

import asyncpg  # type: ignore[import-untyped]

from core.errors import StorageUnavailable
from store.engine import asyncpg_dsn
from store.records import JobNotification

__all__ = ["JOB_CHANNEL", "JobListener", "job_payload"]

_log = logging.getLogger(__name__)

JOB_CHANNEL: Final = "transcriber_jobs"


def job_payload(event: str, job_id: int, session_id: int, session_slug: str) -> str:
    return json.dumps(
        {"event": event, "job_id": job_id, "session_id": session_id, "session_slug": session_slug}
    )


class _Closed:
    """Queue marker: the listening connection is gone."""


_CLOSED: Final = _Closed()


class JobListener:
    """Waits for job notifications on a dedicated asyncpg connection.

    ::

        async with JobListener(database_url) as listener:
            while True:
                note = await listener.wait(timeout_s=10)  # None on timeout: poll anyway
                lease = await repo.jobs.claim_job(worker_id)

    At most ``max_pending`` notifications wait; beyond that the oldest are dropped (each one only
    says "claim now"). :meth:`wait` raises :class:`StorageUnavailable` once the connection dies;
    open a new listener then.
    """

    def __init__(
        self, database_url: str, *, channel: str = JOB_CHANNEL, max_pending: int = 256
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._channel = channel
        self._queue: asyncio.Queue[JobNotification | _Closed] = asyncio.Queue(max_pending)
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> JobListener:
        try:
            self._conn = await asyncpg.connect(self._dsn)
            await self._conn.add_listener(self._channel, self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.aclose()
            raise StorageUnavailable("cannot listen for job notifications") from exc
        self._conn.add_termination_listener(self._on_terminate)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_terminate)
            await conn.close()

    async def wait(self, timeout_s: float | None = None) -> JobNotification | None:
        """The next notification, or None after ``timeout_s`` seconds."""
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if isinstance(item, _Closed):
            self._put(item)  # stay closed for later calls
            raise StorageUnavailable("job notification connection closed")
        return item

    def _put(self, item: JobNotification | _Closed) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(item)

    def _on_notify(self, _conn: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            note = JobNotification(
                event=str(data["event"]),
                job_id=int(data["job_id"]),
                session_id=int(data["session_id"]),
                session_slug=str(data["session_slug"]),
            )
        except (ValueError, KeyError, TypeError):
            _log.warning("ignoring malformed job notification")
            return
        self._put(note)

    def _on_terminate(self, _conn: asyncpg.Connection) -> None:
        _log.warning("job notification connection closed")
        self._put(_CLOSED)
