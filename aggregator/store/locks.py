"""Named leases in the `locks` table: one holder at a time across workers and machines."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from aggregator.store.schema import locks


def acquire(
    conn: Connection, name: str, owner: str, now: datetime, ttl: timedelta
) -> tuple[bool, str | None]:
    """Take or renew `name` for `owner` (see `Store.acquire_lock`)."""
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(locks).values(name=name).on_conflict_do_nothing())
    row = conn.execute(select(locks).where(locks.c.name == name).with_for_update()).one()
    if row.owner not in (None, owner) and row.until is not None and row.until > now:
        return False, row.owner
    conn.execute(update(locks).where(locks.c.name == name).values(owner=owner, until=now + ttl))
    return True, row.owner
