"""R17: kill -9 of the writer mid-transaction, 40 times, on a SQLite WAL file.

After every kill: `PRAGMA integrity_check` is ok; every commit the writer acknowledged
("committed n", printed only after the commit returned) is there; nothing is partial:
the entry count is a multiple of the batch and matches the stored ETag, so validators
never describe entries that are not stored. See tests/crash_writer.py for the writer.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.models import SourceConfig
from aggregator.store import Store
from tests.crash_writer import BATCH, FEED_URL

pytestmark = pytest.mark.slow

ROUNDS = 40
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stored:
    integrity: str
    etag_round: int  # n of the stored ETag "v{n}", -1 when none
    keys: frozenset[int]


def _read_store(path: Path) -> Stored:
    conn = sqlite3.connect(path)  # opening recovers the WAL the killed writer left
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        etag = conn.execute("SELECT etag FROM feeds").fetchone()[0] or '"v-1"'
        keys = frozenset(
            int(key.removeprefix("entry-")) for (key,) in conn.execute("SELECT key FROM entries")
        )
    finally:
        conn.close()
    return Stored(integrity, int(etag.strip('"').removeprefix("v")), keys)


class _Writers:
    """tests/crash_writer.py's zygote: forks writers, reports what they acknowledged."""

    def __init__(self, database_url: str) -> None:
        self.acknowledged = -1
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_writer", database_url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = 0

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def _read_until(self, *wanted: str) -> None:
        """Read lines (noting acknowledged commits) until every wanted prefix was seen."""
        assert self.process.stdout is not None
        missing = set(wanted)
        while missing:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the writer zygote exited (waiting for {missing})")
            word, _, value = line.strip().partition(" ")
            if word == "committed":
                self.acknowledged = int(value)
            elif word == "child":
                self.pid = int(value)
            missing.discard(word)

    def start(self) -> None:
        """Fork a writer and wait until it is about to write."""
        self._send("go")
        self._read_until("child", "ready")

    def kill(self) -> None:
        """kill -9 the writer; afterwards every line it wrote has been read."""
        os.kill(self.pid, signal.SIGKILL)
        self._send("reap")
        self._read_until("reaped")  # the zygote reaps it after its last write

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process.wait(timeout=10)


def test_r17_kill_9_mid_transaction_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    database_url = f"sqlite:///{path}"
    store = Store(database_url)
    store.upgrade()
    store.sync_sources([SourceConfig(url=FEED_URL)], datetime.now(UTC))
    store.close()
    rng = random.Random(17)
    acknowledged = previous = -1
    started = time.monotonic()
    writers = _Writers(database_url)
    try:
        for kill in range(ROUNDS):
            writers.start()
            time.sleep(rng.uniform(0.050, 0.300))
            writers.kill()
            acknowledged = writers.acknowledged
            stored = _read_store(path)
            where = f"kill {kill}: acknowledged {acknowledged}, stored {stored.etag_round}"
            assert stored.integrity == "ok", where
            # 0 acknowledged commits lost; beyond what was known, at most the one in flight
            assert acknowledged <= stored.etag_round <= max(acknowledged, previous) + 1, where
            previous = stored.etag_round
            # nothing partial: the entries are exactly the rounds the stored ETag describes
            assert stored.keys == frozenset(range((stored.etag_round + 1) * BATCH)), where
    finally:
        writers.close()
    assert acknowledged >= ROUNDS // 4, "too few commits happened to exercise crashes"
    assert time.monotonic() - started < 60
