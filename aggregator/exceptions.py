"""The exception tree of aggregator. Contains no logic.

AggregatorError
├── ConfigError(path, line, message)   invalid config file or environment
├── FeedError(url)
│   ├── FetchError                      network, HTTP or policy failure
│   │   └── BlockedAddressError         URL resolves to a refused address
│   └── ParseError                      not a feed, or a refused document
├── StoreError                          database failure
└── FeedExistsError                     the config already lists the URL
"""

from __future__ import annotations

from pathlib import Path


class AggregatorError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AggregatorError):
    """A config file or environment override is invalid.

    The message reads `path:line: problem` so editors and terminals can jump to it;
    `more` holds the file's other problems found in the same reading (its other
    invalid feeds), each on a line of its own after the first.
    """

    def __init__(
        self,
        path: Path | str,
        line: int | None,
        message: str,
        more: tuple[ConfigError, ...] = (),
    ) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        self.more = more
        where = f"{self.path}:{line}" if line else self.path
        super().__init__("\n".join([f"{where}: {message}", *map(str, more)]))


class FeedError(AggregatorError):
    """A failure that belongs to one feed."""

    def __init__(self, url: str, message: str = "") -> None:
        self.url = url
        self.message = message
        super().__init__(f"{url}: {message}" if message else url)


class FetchError(FeedError):
    """The feed could not be fetched (network, HTTP status, limits, policy)."""


class BlockedAddressError(FetchError):
    """The URL resolves to an address the policy refuses (private, loopback, ...)."""


class ParseError(FeedError):
    """The document is not a feed we can read, or was refused before parsing."""


class StoreError(AggregatorError):
    """The database failed."""


class FeedExistsError(AggregatorError):
    """The feed is already subscribed."""
