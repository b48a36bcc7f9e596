"""Reads the API needs that ``api.db.repository`` does not offer, over the storage models.

Kept here (not in ``api/db``, which the storage side owns); the storage side may fold them into
the repository:

* :func:`space_quota_override`: whether a space has its own quota row, and its value
  (``Repository.effective_quota`` folds "no row" and the default together, so the API could not
  say where an effective quota comes from).

Connection failures are translated to :class:`api.db.errors.StorageUnavailable` like the
repository does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db.errors import StorageUnavailable
from api.db.models import SpaceQuota


@asynccontextmanager
async def _read(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    try:
        async with sessionmaker() as db:
            yield db
    except (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StorageUnavailable("database unavailable") from exc


async def space_quota_override(
    sessionmaker: async_sessionmaker[AsyncSession], space_id: str
) -> tuple[bool, int | None]:
    """``(True, minutes)`` when the space has its own quota (None = unlimited), else
    ``(False, None)``."""
    stmt = select(SpaceQuota.monthly_minutes).where(SpaceQuota.space_id == space_id)
    async with _read(sessionmaker) as db:
        row = (await db.execute(stmt)).first()
    return (False, None) if row is None else (True, row.monthly_minutes)
