"""Named leases in the `locks` table: one holder at a time across workers and machines."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from aggregator.store.schema import locks


def _ensure_row(conn: Connection, name: str) -> None:
    """Create the lock's row if it is missing (concurrent creators do not conflict)."""
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(locks).values(name=name).on_conflict_do_nothing())


def acquire(
    conn: Connection, name: str, owner: str, now: datetime, ttl: timedelta
) -> tuple[bool, str | None]:
    """Take or renew `name` for `owner` (see `Store.acquire_lock`)."""
    _ensure_row(conn, name)
    row = conn.execute(select(locks).where(locks.c.name == name).with_for_update()).one()
    if row.owner not in (None, owner) and row.until is not None and row.until > now:
        return False, row.owner
    conn.execute(update(locks).where(locks.c.name == name).values(owner=owner, until=now + ttl))
    return True, row.owner


def renew(conn: Connection, name: str, owner: str, until: datetime) -> bool:
    """Extend `owner`'s hold on `name` to `until` (never shortening it); False if it
    no longer holds it (fencing)."""
    row = conn.execute(
        select(locks.c.owner, locks.c.until).where(locks.c.name == name).with_for_update()
    ).one_or_none()
    if row is None or row.owner != owner or row.until is None:  # gone, or given up
        return False
    if row.until < until:
        conn.execute(update(locks).where(locks.c.name == name).values(until=until))
    return True


def take(conn: Connection, name: str, owner: str, until: datetime) -> None:
    """Take `name` whoever holds it (an operator's command overriding a worker)."""
    _ensure_row(conn, name)
    conn.execute(update(locks).where(locks.c.name == name).values(owner=owner, until=until))


def release(conn: Connection, name: str, owner: str) -> None:
    """Give `name` up: anyone may take it at once. The owner's name stays, so that the
    next holder learns who held it last (a grouper that did not warm-starts: `regroup`
    or `poll` changed the stories while its index stood still), and `renew` fails."""
    conn.execute(
        update(locks).where(locks.c.name == name, locks.c.owner == owner).values(until=None)
    )
