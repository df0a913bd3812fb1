"""The writer that tests/test_crash.py kills (R17): `python -m tests.crash_writer URL`.

The process started by the test is a zygote: it imports the store once, then for each
"go" line on stdin forks a writer (printing "child PID"), and for each "reap" line waits
for that writer to die (printing "reaped PID"), so 40 kills cost 40 forks, not 40
interpreter start-ups.

A writer continues from what the store holds: the stored ETag `"v{n}"` says round n was
the last to commit. It prints "ready", then loops forever: lease the feed, then in one
`Store.save_update` write entries n*50 .. n*50+49 together with ETag `"v{n}"`, and print
"committed n" (flushed) once the commit has returned. Nothing is printed before a commit
is durable, so every printed round must survive a kill -9.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

from aggregator.models import EntryData
from aggregator.store import FeedUpdate, Store

BATCH = 50
FEED_URL = "http://127.0.0.1:9/crash.xml"
OWNER = "crash-writer"


def batch(n: int, now: datetime) -> tuple[EntryData, ...]:
    """The entries of round n: keys n*50 .. n*50+49."""
    return tuple(
        EntryData(
            key=f"entry-{i}",
            title=f"Entry {i}",
            link=f"https://example.org/{i}",
            published_at=now,
            updated_at=now,
            summary=f"Summary of entry {i}.",
            content_html=f"<p>Entry {i}</p>",
            content_hash=f"hash-{i}",
        )
        for i in range(n * BATCH, n * BATCH + BATCH)
    )


def next_round(store: Store) -> tuple[int, int]:
    """(feed id, the round to write next), from the ETag stored by the last commit."""
    (feed,) = store.get_feeds()
    etag = feed.etag or '"v-1"'
    return feed.id, int(etag.strip('"').removeprefix("v")) + 1


def _say(line: str) -> None:
    """One line in one write(2), so a kill -9 never leaves half a line on the pipe
    (print issues two writes, text and newline, when PYTHONUNBUFFERED is set)."""
    os.write(1, (line + "\n").encode())


def write_forever(database_url: str) -> None:
    store = Store(database_url)
    feed_id, n = next_round(store)
    _say("ready")
    while True:
        now = datetime.now(UTC)
        # A zero lease: a killed writer's lease has always expired when the next one starts.
        if not store.claim_due_feeds(OWNER, now, timedelta(0), 1, force=True):
            raise SystemExit("crash_writer: the feed could not be leased")
        state = FeedUpdate(etag=f'"v{n}"', last_fetch_at=now, last_status="ok")
        if not store.save_update(feed_id, OWNER, state, batch(n, now), now).saved:
            raise SystemExit("crash_writer: lease lost")
        _say(f"committed {n}")
        n += 1


def zygote(database_url: str) -> None:
    child = 0
    for line in sys.stdin:
        if line.strip() == "go":
            child = os.fork()
            if child == 0:
                try:
                    write_forever(database_url)
                finally:
                    os._exit(1)  # a writer never returns into the zygote's loop
            _say(f"child {child}")
        elif line.strip() == "reap":
            os.waitpid(child, 0)
            _say(f"reaped {child}")


if __name__ == "__main__":
    zygote(sys.argv[1])
