"""Deciding how a feed's entries are identified (pure).

Entries are identified by guid/id first (see `normalise.entry_key`). Some feeds break
that: they give several entries the same guid, or new guids for the same articles on
every fetch. When a fetch shows either, the feed falls back, for good, to the "link"
rule: entries are identified by their canonical link, stored entries are re-keyed to
match, and the feed's status says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from aggregator.models import EntryData
from aggregator.normalise import entry_key

LINK_RULE = "link"
# Guids "change between fetches" when at least this share of the entries whose link we
# already know arrive under a new guid (and at least CHURN_MIN_ENTRIES of them): one
# edited guid is a correction, most of them is a feed that makes guids up per request.
CHURN_SHARE = 0.5
CHURN_MIN_ENTRIES = 2


@dataclass(frozen=True)
class Identity:
    rule: str | None  # None: guid first; "link"
    items: tuple[EntryData, ...]
    rekeys: dict[str, str] = field(default_factory=dict)  # stored key -> new key
    note: str | None = None  # set when the rule changed, for the feed's status


def resolve(
    rule: str | None,
    items: Sequence[EntryData],
    stored: Sequence[tuple[str, str]],
    repeated_guids: int = 0,
) -> Identity:
    """Apply (and if needed switch) the feed's identity rule.

    Args:
        rule: the feed's current rule.
        items: the entries just parsed, keyed guid-first.
        stored: (key, link) of the feed's stored entries that share a link with `items`.
        repeated_guids: how many entries of the document reused an earlier entry's guid
            with another link (see `normalise.normalise_entries`).
    """
    note = None
    if rule != LINK_RULE:
        reason = unstable_guids(items, stored, repeated_guids)
        if reason is None:
            return Identity(rule, tuple(items))
        rule = LINK_RULE
        note = f"ids: {reason}; entries are identified by link from now on"
    by_link = {key: _link_key(link) for key, link in stored if link}
    rekeys = {key: new for key, new in by_link.items() if key != new}
    return Identity(rule, tuple(_by_link(item) for item in items), rekeys, note)


def unstable_guids(
    items: Sequence[EntryData], stored: Sequence[tuple[str, str]], repeated_guids: int = 0
) -> str | None:
    """Why the guids of this feed cannot identify its entries, or None if they can."""
    if repeated_guids:
        return "the feed gives the same guid to different entries"
    stored_key = {link: key for key, link in stored}
    known = [item for item in items if item.link in stored_key]
    changed = [item for item in known if stored_key[item.link or ""] != item.key]
    if len(changed) >= CHURN_MIN_ENTRIES and len(changed) >= CHURN_SHARE * len(known):
        return "the feed's guids change between fetches"
    return None


def _link_key(link: str) -> str:
    return entry_key(None, link, "", None, "")


def _by_link(item: EntryData) -> EntryData:
    if not item.link:
        return item  # no link: the guid (or content hash) is all there is
    return replace(item, key=_link_key(item.link))
