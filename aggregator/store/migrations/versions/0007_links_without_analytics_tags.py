"""Stored entry links lose the analytics tags this release added to the tracking list
(`normalise.TRACKING_PARAMS`: Webtrekk's `wt_mc`, AT Internet's `xtor`, comScore's `ns_*`,
...), so that they equal the links new fetches give: an entry identified by its link is
re-keyed to match (else the next fetch would store it again), and its content hash is
cleared (`entries.STALE_HASH`), so that the next fetch refreshes it without counting an
edit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.normalise import entry_key, strip_tracking
from aggregator.store.entries import STALE_HASH, key_hash

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ADDED = (
    "wt_mc",
    "wt_zmc",
    "xtor",
    "at_medium",
    "at_campaign",
    "ns_mchannel",
    "ns_source",
    "ns_campaign",
    "ns_linkname",
    "ns_fee",
    "smid",
    "mwrsm",
    "emc",
    "ocid",
    "soc_src",
    "soc_trk",
    "sr_share",
)
"""The names this release added, as of this release (a later addition has its own
migration)."""

entries = sa.table(
    "entries",
    *(sa.column(name) for name in ("id", "feed_id", "key", "key_hash", "link", "content_hash")),
    sa.column("link_hash"),
)


def upgrade() -> None:
    conn = op.get_bind()
    lowered = sa.func.lower(entries.c.link)
    tagged = sa.or_(*(lowered.like(f"%{name}=%") for name in ADDED))  # a superset
    rows = conn.execute(
        sa.select(entries.c.id, entries.c.feed_id, entries.c.key, entries.c.link)
        .where(tagged)
        .order_by(entries.c.id)
    ).all()
    for row in rows:
        link = strip_tracking(row.link)
        if link != row.link:
            conn.execute(
                sa.update(entries)
                .where(entries.c.id == row.id)
                .values(_cleaned(conn, row.feed_id, row.key, row.link, link))
            )


def _cleaned(conn: sa.Connection, feed_id: int, key: str, old: str, new: str) -> dict[str, str]:
    values = {"link": new, "link_hash": key_hash(new), "content_hash": STALE_HASH}
    if key == entry_key(None, old, "", None, ""):  # identified by its link
        new_key = entry_key(None, new, "", None, "")
        taken = conn.execute(
            sa.select(entries.c.id).where(
                entries.c.feed_id == feed_id, entries.c.key_hash == key_hash(new_key)
            )
        ).first()
        if taken is None:  # else two stored copies of one article: the first stored keeps it
            values |= {"key": new_key, "key_hash": key_hash(new_key)}
    return values


def downgrade() -> None:
    """Nothing to undo: links without the tags are what the previous release stored
    for the names it knew, and it reads them as they are."""
