"""How counts read in the CLI's and the web pages' sentences."""

from __future__ import annotations


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """`number` with the noun that agrees with it: "1 source", "3 sources", "1 entry"
    (a plural other than singular + "s" is given: "2 entries")."""
    noun = singular if number == 1 else plural or singular + "s"
    return f"{number} {noun}"
