"""Dates feedparser cannot read: RFC 822 dates written with another language's names.

Some feeds write `pubDate` as RFC 822 with their own language's day and month names
("Seg, 24 Set 2018 19:42:40 -0300" in Portuguese, "mer, 16 nov 2022 00:38:15 +0100" in
Italian). feedparser knows only English names, so such an entry had no date and fell
back to the time it was first seen: a feed's whole back catalogue looked like breaking
news. This module owns one feedparser date handler that rewrites the names to English
and hands the result to feedparser's own RFC 822 parser, so both parse paths (the fast
path asks feedparser for any date it does not read itself) read these dates alike.

The handler is tried before feedparser's own and declines (returns None) unless it
finds a name to translate, so every date feedparser read before reads the same.
"""

from __future__ import annotations

import time

import feedparser
from feedparser.datetimes.rfc822 import _parse_date_rfc822

# Month names and abbreviations, lower-case, as feeds write them (a trailing "." is
# ignored). Portuguese, Spanish, Italian, French, German, Dutch and the Scandinavian
# languages: the Latin-script languages whose feeds are common and whose names differ
# from English. Names starting with an English abbreviation ("marzo", "juni") need no
# entry: feedparser reads the first three letters. No name here means two months.
_MONTH_NAMES = {
    "jan": "ene gen janv janeiro",
    "feb": "fev fevr févr fevereiro février",
    "mar": "mär märz mrz mrt maart março",
    "apr": "abr abril avr avril",
    "may": "mai maio mag maggio mayo mei maj",
    "jun": "giu giugno juin junho",
    "jul": "lug luglio juil juillet julho",
    "aug": "ago agosto août aout",
    "sep": "set setembro setiembre settembre",
    "oct": "out outubro okt oktober ott ottobre octobre octubre",
    "nov": "novembro",
    "dec": "dez dezembro dic diciembre dicembre déc décembre des desember",
}
LOCAL_MONTHS = {name: english for english, names in _MONTH_NAMES.items() for name in names.split()}
_ENGLISH_MONTHS = frozenset(_MONTH_NAMES)
_ENGLISH_DAYS = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})

_registered = False


def localised_rfc822(text: str) -> time.struct_time | None:
    """The UTC time of an RFC 822 date with a non-English day or month name, read by
    feedparser's RFC 822 parser once the names are English; None for any other text."""
    parts = text.split()
    translated = False
    if len(parts) > 2 and _is_day_number(parts[1]) and _english_month(parts[2]):
        day_name = parts[0].rstrip(",.").lower()
        if not day_name.isalpha():
            return None
        # redundant in RFC 822, and feedparser knows only English day names
        translated = day_name[:3] not in _ENGLISH_DAYS
        parts = parts[1:]
    if len(parts) < 3 or not _is_day_number(parts[0]):
        return None
    month = _english_month(parts[1])
    if month is None:
        return None
    translated = translated or parts[1].rstrip(",.").lower()[:3] != month
    if not translated:
        return None  # plain English: feedparser's own handlers decide, as before
    rewritten = " ".join([parts[0].rstrip("."), month, *parts[2:]])
    parsed: time.struct_time | None = _parse_date_rfc822(rewritten)
    return parsed


def _is_day_number(token: str) -> bool:
    return token.rstrip(".").isdigit()  # "24" or, as German writes it, "24."


def _english_month(token: str) -> str | None:
    """The English abbreviation of a month name in any language listed (or English)."""
    name = token.rstrip(",.").lower()
    return name[:3] if name[:3] in _ENGLISH_MONTHS else LOCAL_MONTHS.get(name)


def register() -> None:
    """Add `localised_rfc822` to feedparser's date handlers (once per process)."""
    global _registered
    if not _registered:
        feedparser.registerDateHandler(localised_rfc822)
        _registered = True
