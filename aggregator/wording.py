"""How counts and cut text read in the CLI's and the web pages' sentences and in the
feeds' titles."""

from __future__ import annotations

ELLIPSIS = "\u2026"


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """`number` with the noun that agrees with it: "1 source", "3 sources", "1 entry"
    (a plural other than singular + "s" is given: "2 entries")."""
    noun = singular if number == 1 else plural or singular + "s"
    return f"{number} {noun}"


def truncate_words(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-\u2013\u2014") + ELLIPSIS
