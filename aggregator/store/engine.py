"""Engines: database URL handling and per-dialect connection set-up.

SQLite runs in WAL mode with a busy timeout and full sync, so a crash of the process or
the machine never loses a committed transaction. Write transactions on SQLite start with
`BEGIN IMMEDIATE` (see `Store._write`), which takes the write lock up front instead of
failing on upgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_database_url(url: str) -> str:
    """Map the URL forms operators use (`postgres://`, `postgresql://`) to our drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(database_url: str) -> Engine:
    """Create the engine for `database_url`, creating a SQLite file's folder if needed."""
    url = make_url(normalise_database_url(database_url))
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url.database)
    return create_engine(url, pool_pre_ping=True, future=True)


def _make_sqlite_engine(database: str | None) -> Engine:
    if not database or database == ":memory:":
        raise ValueError("store: SQLite needs a file path (WAL mode does not apply in memory)")
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A small pool of kept connections: opening one runs the PRAGMAs below and closing
    # the last one checkpoints the WAL, about 8 ms per transaction when measured
    # (bench/poll.py). Connections are used by one thread at a time.
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=QueuePool,
        pool_size=5,
        max_overflow=10,
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


SQLITE_WAL_LIMIT_BYTES = 16 * 1024 * 1024


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module; we emit BEGIN ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # the write-ahead log is cut back to this size when a checkpoint empties it (without
    # a limit it kept the largest size it ever had: 130 MB after a long reader)
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
