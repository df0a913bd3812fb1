"""Tests for aggregator.config: settings, the config file, its errors and env overrides."""

from __future__ import annotations

import dataclasses
import importlib.util
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aggregator import __version__
from aggregator.config import (
    EMBEDDINGS_MODULES,
    Config,
    Settings,
    format_duration,
    load_config,
    normalise_url,
    parse_duration,
    resolve_config_path,
    settings_reference,
)
from aggregator.exceptions import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "aggregator.toml"

FEEDS = """\
# my feeds
[settings]
site_title = "News"   # a comment
port = 9000

[[feeds]]
url = "https://example.com/a.xml"
title = "A"
tags = ["world", "europe"]

[[feeds]]
# the second one
url = "https://example.org/b.xml"
interval = "1h30m"
enabled = false
"""


def write(tmp_path: Path, text: str, name: str = "aggregator.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={} if env is None else env)
    return info.value


def feed(url: str = "https://example.com/feed", **keys: str) -> str:
    lines = [f'url = "{url}"'] + [f"{k} = {v}" for k, v in keys.items()]
    return "[[feeds]]\n" + "\n".join(lines) + "\n\n"


# -- the shipped file ---------------------------------------------------------------------


def test_shipped_config_loads_with_real_feeds() -> None:
    config = load_config(SHIPPED, env={})
    hosts = {urlsplit(s.url).hostname for s in config.sources}
    assert len(config.sources) >= 8
    assert len(hosts) >= 5
    assert all("world" in s.tags for s in config.sources)
    assert all(s.title for s in config.sources)


def test_shipped_config_lists_every_setting_with_its_default() -> None:
    written = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))["settings"]
    assert set(written) == {f.name for f in dataclasses.fields(Settings)}
    assert load_config(SHIPPED, env={}).settings == Settings()


def test_shipped_config_shows_how_to_add_a_feed() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert "aggregator add" in text and "# [[feeds]]" in text.replace("#   ", "# ")


# -- loading a valid file -----------------------------------------------------------------


def test_load_reads_settings_and_sources_with_lines(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FEEDS), env={})
    assert isinstance(config, Config)
    assert config.path == tmp_path / "aggregator.toml"
    assert config.settings.site_title == "News"
    assert config.settings.port == 9000
    assert config.settings.default_interval == 1800
    first, second = config.sources
    assert (first.url, first.title, first.tags, first.line) == (
        "https://example.com/a.xml",
        "A",
        ("world", "europe"),
        6,
    )
    assert (second.interval, second.enabled, second.title, second.line) == (5400, False, None, 11)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing yet\n"), env={})
    assert config.settings == Settings()
    assert config.sources == ()


def test_settings_durations_accept_strings_and_seconds(tmp_path: Path) -> None:
    text = '[settings]\ndefault_interval = 600\nrequest_timeout = "1m"\nmax_interval = "2d"\n'
    settings = load_config(write(tmp_path, text), env={}).settings
    assert (settings.default_interval, settings.request_timeout) == (600, 60)
    assert settings.max_interval == 172800


def test_allowed_networks_are_a_tuple(tmp_path: Path) -> None:
    text = '[settings]\nallowed_networks = ["10.1.0.0/16", "fd00::/8"]\n'
    settings = load_config(write(tmp_path, text), env={}).settings
    assert settings.allowed_networks == ("10.1.0.0/16", "fd00::/8")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("1d", 86400), ("45", 45), (7, 7)],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "1m1h", "-5", "1.5h", True])
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 90, 1800, 5400, 86400)] == [
        "0s",
        "1m30s",
        "30m",
        "1h30m",
        "1d",
    ]


def test_normalise_url() -> None:
    assert normalise_url("HTTPS://Example.COM:443") == "https://example.com/"
    assert normalise_url("http://example.com:8080/A?b") == "http://example.com:8080/A?b"
    # dot segments as the request resolves them; a dot elsewhere stays
    assert normalise_url("http://h.example/a/../b/./feed.xml") == "http://h.example/b/feed.xml"
    assert normalise_url("http://h.example/a/..") == "http://h.example/"
    assert normalise_url("http://h.example/v1.2/rss?x=../y") == "http://h.example/v1.2/rss?x=../y"


# -- errors, each with its file and line ----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = config_error(tmp_path / "nope.toml")
    assert str(error).startswith(f"{tmp_path / 'nope.toml'}: config file not found (give")
    assert "--config PATH or AGGREGATOR_CONFIG" in str(error)


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[settings]\nport = 8080\nsite_title = "unterminated\n')
    error = config_error(path)
    assert error.line == 3
    assert str(error).startswith(f"{path}:3: invalid TOML")


def test_unknown_setting_suggests_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, "# x\n[settings]\nport = 1\nretention_day = 3\n")
    error = config_error(path)
    assert str(error) == (
        f"{path}:4: unknown setting 'retention_day', did you mean 'retention_days'?"
    )


def test_unknown_feed_key_suggests_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, feed() + feed("https://b.example/", tag='["x"]'))
    error = config_error(path)
    assert error.line == 6
    assert "unknown feed key 'tag', did you mean 'tags'?" in error.message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[setting]\nport = 1\n")
    error = config_error(path)
    assert str(error) == f"{path}:1: unknown top-level key 'setting', did you mean 'settings'?"
    path = write(tmp_path, 'title = "x"\n')
    assert config_error(path).line == 1


@pytest.mark.parametrize(
    "url", ["ftp://example.com/feed", "https://", "example.com/feed", "http://ex ample.com/"]
)
def test_bad_url(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, feed() + feed(url, title='"T"'))
    error = config_error(path)
    assert error.line == 5
    assert "is not an http(s) URL with a host" in error.message


def test_missing_url(tmp_path: Path) -> None:
    path = write(tmp_path, feed() + '[[feeds]]\ntitle = "no url"\n')
    error = config_error(path)
    assert (error.line, "url: missing" in error.message) == (4, True)


def test_duplicate_source_names_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        feed("https://Example.com/feed")
        + feed("https://other.example/")
        + feed("https://example.com:443/feed"),
    )
    error = config_error(path)
    assert error.line == 8
    assert "duplicate feed 'https://example.com:443/feed'" in error.message
    assert "first listed on line 1" in error.message


@pytest.mark.parametrize(
    ("interval", "problem"),
    [('"5 minutes"', "is not a duration"), ('"1m"', "outside"), ('"2d"', "outside")],
)
def test_bad_interval(tmp_path: Path, interval: str, problem: str) -> None:
    path = write(tmp_path, feed(title='"T"', interval=interval))
    error = config_error(path)
    assert error.line == 4
    assert "interval" in error.message and problem in error.message


def test_bad_tag_explains_the_rule(tmp_path: Path) -> None:
    path = write(tmp_path, feed(tags='["ok", "World News"]'))
    error = config_error(path)
    assert error.line == 3
    assert "tag 'World News' is invalid: tags must match ^[a-z0-9][a-z0-9_-]{0,31}$" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('[settings]\nsite_title = "x"\nport = "8080"\n', 3, "port: expected an integer"),
        ("[settings]\nallow_private_addresses = 1\n", 2, "expected true or false"),
        ('[settings]\nallowed_networks = "10.0.0.0/8"\n', 2, "expected an array"),
        ('[settings]\nallowed_networks = ["nope"]\n', 2, "is not a network"),
        ("[settings]\nport = 70000\n", 2, "out of range"),
        ('[[feeds]]\nurl = "https://a.example/"\ntags = "world"\n', 3, "expected an array"),
        ('[[feeds]]\nurl = "https://a.example/"\nenabled = "yes"\n', 3, "expected true"),
        ('[[feeds]]\nurl = "https://a.example/"\ntitle = 3\n', 3, "expected a string"),
        ("[[feeds]]\nurl = 3\n", 2, "expected a URL string"),
        ('settings = "x"\n', 1, "settings must be a table"),
        ('feeds = "x"\n', 1, "feeds must be [[feeds]] tables"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, line: int, problem: str) -> None:
    error = config_error(write(tmp_path, text))
    assert error.line == line
    assert problem in error.message


def test_default_interval_must_lie_within_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, '[settings]\nmin_interval = "10m"\ndefault_interval = "5m"\n')
    error = config_error(path)
    assert (error.line, error.message.startswith("default_interval:")) == (3, True)


def test_embeddings_without_the_extra_name_the_line_and_the_fix(tmp_path: Path) -> None:
    if all(importlib.util.find_spec(module) for module in EMBEDDINGS_MODULES):
        pytest.skip("the embeddings extra is installed here")
    path = write(tmp_path, '[settings]\nsite_title = "x"\ngroup_embeddings = true\n')
    error = config_error(path)
    assert error.line == 3
    assert "pip install 'aggregator[embeddings]'" in error.message
    # set by the environment: the error names the variable, not a line of the file
    path = write(tmp_path, '[settings]\nsite_title = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"AGGREGATOR_GROUP_EMBEDDINGS": "true"})
    assert str(caught.value).startswith("environment: AGGREGATOR_GROUP_EMBEDDINGS: ")


# -- environment --------------------------------------------------------------------------


def test_env_overrides_file_and_defaults(tmp_path: Path) -> None:
    env = {
        "AGGREGATOR_PORT": "9100",
        "AGGREGATOR_SITE_TITLE": "From env",
        "AGGREGATOR_DEFAULT_INTERVAL": "1h",
        "AGGREGATOR_ALLOW_PRIVATE_ADDRESSES": "yes",
        "AGGREGATOR_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.0/24",
        "AGGREGATOR_CONFIG": "ignored/here.toml",
        "AGGREGATOR_SOMETHING_ELSE": "ignored",
    }
    config = load_config(write(tmp_path, FEEDS), env=env)
    settings = config.settings
    assert (settings.port, settings.site_title, settings.default_interval) == (
        9100,
        "From env",
        3600,
    )
    assert settings.allow_private_addresses is True
    assert settings.allowed_networks == ("10.0.0.0/8", "192.168.1.0/24")
    assert len(config.sources) == 2


def test_database_url_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, '[settings]\ndatabase_url = "sqlite:///file.db"\n')
    assert load_config(path, env={}).settings.database_url == "sqlite:///file.db"
    env = {"DATABASE_URL": "postgresql://u@db/agg"}
    assert load_config(path, env=env).settings.database_url == "postgresql://u@db/agg"
    env["AGGREGATOR_DATABASE_URL"] = "sqlite:///env.db"
    assert load_config(path, env=env).settings.database_url == "sqlite:///env.db"


@pytest.mark.parametrize(
    ("env", "start"),
    [
        ({"AGGREGATOR_PORT": "eighty"}, "AGGREGATOR_PORT: 'eighty' is not an integer"),
        ({"AGGREGATOR_TICK_INTERVAL": "soon"}, "AGGREGATOR_TICK_INTERVAL: 'soon' is not a"),
        ({"AGGREGATOR_ALLOW_PRIVATE_ADDRESSES": "maybe"}, "AGGREGATOR_ALLOW_PRIVATE_ADDRESSES:"),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL: not a database URL"),
    ],
)
def test_bad_env_value_names_the_variable(tmp_path: Path, env: dict[str, str], start: str) -> None:
    error = config_error(write(tmp_path, FEEDS), env=env)
    assert error.path == "environment"
    assert error.line is None
    assert error.message.startswith(start)
    assert str(error) == f"environment: {error.message}"


def test_a_bad_database_url_is_not_echoed(tmp_path: Path) -> None:
    """The message shows on /healthz and /sources (`config_problem`): a database URL
    with a typo must not put its password there."""
    for env in ({}, {"DATABASE_URL": "postgresql//u:s3cret@db/agg"}):
        path = write(tmp_path, '[settings]\ndatabase_url = "postgresql//u:s3cret@db/agg"\n')
        error = config_error(path, env=env)
        assert "not a database URL" in str(error) and "s3cret" not in str(error)


def test_resolve_config_path() -> None:
    env = {"AGGREGATOR_CONFIG": "/etc/agg.toml"}
    assert resolve_config_path("mine.toml", env) == Path("mine.toml")
    assert resolve_config_path(None, env) == Path("/etc/agg.toml")
    assert resolve_config_path(None, {}) == Path("config/aggregator.toml")


# -- settings helpers ---------------------------------------------------------------------


def test_settings_reference_documents_every_setting() -> None:
    rows = settings_reference()
    assert [r[0] for r in rows] == [f.name for f in dataclasses.fields(Settings)]
    assert all(default and help_text for _, default, help_text in rows)
    assert dict((r[0], r[1]) for r in rows)["default_interval"] == '"30m"'


def test_fetch_options_and_user_agent() -> None:
    settings = Settings(contact_url="https://example.com/about", request_timeout=12)
    options = settings.fetch_options()
    assert options.user_agent == f"aggregator/{__version__} (+https://example.com/about)"
    assert (options.timeout, options.max_per_host, options.max_connections) == (12.0, 2, 64)
    assert Settings().user_agent == f"aggregator/{__version__}"
