"""Editing the feed list of the config file: add a source, import and export OPML.

Owns writing `[[feeds]]` tables with tomlkit (so the operator's comments and layout
survive) and the OPML 2.0 format. Validation is `aggregator.config`'s; reading OPML uses
defusedxml because the document comes from the user.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import tomlkit
from defusedxml import DefusedXmlException
from tomlkit.items import AoT, Table

from aggregator import config as cfg
from aggregator.exceptions import ConfigError, FeedExistsError
from aggregator.models import SourceConfig

OPML_PATH = "OPML"  # the `path` of a ConfigError about an OPML document


def add_source(
    path: Path,
    url: str,
    title: str | None = None,
    tags: Sequence[str] = (),
    interval: str | None = None,
) -> None:
    """Append a `[[feeds]]` table to the config file, keeping everything else as is.

    Args:
        path: the config file; it must exist and load.
        url: the feed URL (http or https).
        title: shown instead of the feed's own title.
        tags: tags for the feed.
        interval: check interval as a duration string ("30m"), or None for the default.

    Raises:
        ConfigError: the file does not load, or a value is invalid.
        FeedExistsError: the file already lists this URL.
    """
    config = cfg.load_config(path)
    entry = _new_entry(url, title, tags, interval)
    source = _check_entry(config, entry)
    existing = cfg.find_source(config, source.url)
    if existing is not None:
        raise FeedExistsError(f"{url}: already in {path} (line {existing.line})")
    _append_entries(config, [entry])


def check_options(
    path: Path, url: str, title: str | None, tags: Sequence[str], interval: str | None
) -> None:
    """Raise `ConfigError` (naming `url`) when the title, tags or interval that `add_source`
    would write are invalid, or the file does not load: checked before `url` is fetched,
    which may be a web page's address, not yet the feed's."""
    config = cfg.load_config(path)
    entry = _new_entry(OPTIONS_PROBE_URL, title, tags, interval)
    try:
        cfg.parse_source(entry, config.settings)
    except cfg.InvalidValue as e:
        raise ConfigError(config.path, None, f"cannot add {url!r}: {e}") from None


OPTIONS_PROBE_URL = "https://options.invalid/"
"""A valid URL that stands for the one to add while its options are checked."""


def remove_source(path: Path, url: str) -> SourceConfig:
    """Take a source out of the config file: its `[[feeds]]` table and the comment lines
    right above it; everything else is kept as written. A file that does not load can
    lose the table that made it invalid (the file must load without it).

    Its stored entries stay (the feed is no longer polled, and its entries leave the
    merged outputs; retention prunes them as it prunes any feed's). The new text is
    checked to load with exactly the other sources before it is written.

    Returns:
        The source removed.

    Raises:
        ConfigError: the file does not load, does not list `url`, or could not be
            edited safely (it is then left as it was).
    """
    try:
        config, source, index, text = _listed(path, url)
    except ConfigError as invalid:
        return _remove_invalid(path, url, invalid)
    others = [s for s in config.sources if s is not source]
    _write_checked(config, source, cfg.without_feed_table(text, index), others)
    return source


def _remove_invalid(path: Path, url: str, invalid: ConfigError) -> SourceConfig:
    """Remove the table of `url` from a config file that does not load, when that table
    is what made it invalid: the file without it must load. Else `invalid` stands."""
    text = path.read_bytes().decode("utf-8")
    try:
        tables = tomllib.loads(text).get("feeds", [])
    except tomllib.TOMLDecodeError:
        raise invalid from None  # not TOML: the tables cannot be told apart
    key = cfg.normalise_url(url)
    found = [
        index
        for index, table in enumerate(tables if isinstance(tables, list) else [])
        if isinstance(table, dict) and cfg.normalise_url(str(table.get("url", ""))) == key
    ]
    if len(found) != 1:
        raise invalid
    new_text = cfg.without_feed_table(text, found[0])
    try:
        cfg.parse_config(path, new_text)
    except ConfigError:
        raise invalid from None  # the rest of the file has problems too
    _write_atomically(path, new_text)
    return SourceConfig(url=str(tables[found[0]]["url"]), line=invalid.line)


def set_enabled(path: Path, url: str, enabled: bool) -> SourceConfig:
    """Pause (`enabled = false`) or resume a source in the config file, everything else
    kept as written; the new text is checked to load with that one change.

    Returns:
        The source as the file now lists it.

    Raises:
        ConfigError: the file does not load, does not list `url`, or could not be
            edited safely (it is then left as it was).
    """
    config, source, index, text = _listed(path, url)
    if source.enabled == enabled:
        return source
    new_text = cfg.with_feed_flag(text, index, "enabled", enabled, default=True)
    edited = replace(source, enabled=enabled)
    _write_checked(config, source, new_text, [edited if s is source else s for s in config.sources])
    return edited


def _listed(path: Path, url: str) -> tuple[cfg.Config, SourceConfig, int, str]:
    """The config file's config, the source it lists for `url`, that source's position
    and the file's text as written (CRLF line endings included)."""
    config = cfg.load_config(path)
    source = cfg.find_source(config, url)
    if source is None:
        raise ConfigError(path, None, f"{url}: not in the config file")
    return config, source, config.sources.index(source), path.read_bytes().decode("utf-8")


def _write_checked(
    config: cfg.Config, source: SourceConfig, new_text: str, wanted: Sequence[SourceConfig]
) -> None:
    """Replace the config file with `new_text` if it loads with exactly the `wanted`
    sources (their lines aside); else refuse, leaving the file as it was."""
    path = config.path
    try:
        loaded = [replace(s, line=None) for s in cfg.parse_config(path, new_text).sources]
    except ConfigError:
        loaded = None
    if loaded != [replace(s, line=None) for s in wanted]:
        message = f"{source.url}: the config could not be edited safely; edit it by hand"
        raise ConfigError(path, source.line, message)
    _write_atomically(path, new_text)


def import_opml(path: Path, opml: bytes, name: str = OPML_PATH) -> tuple[list[str], list[str]]:
    """Add every feed of an OPML document to the config file.

    Outlines with an `xmlUrl` count at any depth. Tags come from the outline's `category`
    and from the text of the outlines around it, when they make valid tags once
    slugified. Nothing is written if any feed is invalid.

    Args:
        path: the config file; it must exist and load.
        opml: the OPML document.
        name: what errors about the document call it (its file name).

    Returns:
        (URLs added, URLs skipped because the file, or the document, already had them).

    Raises:
        ConfigError: the document is not OPML, a feed in it is invalid, or the config
            file does not load.
    """
    config = cfg.load_config(path)
    known = {cfg.normalise_url(s.url) for s in config.sources}
    added: list[str] = []
    skipped: list[str] = []
    entries: list[dict[str, object]] = []
    for entry in _read_opml(opml, name):
        url = str(entry["url"])
        _check_entry(config, entry)
        key = cfg.normalise_url(url)
        if key in known:
            skipped.append(url)
            continue
        known.add(key)
        added.append(url)
        entries.append(entry)
    if entries:
        _append_entries(config, entries)
    return added, skipped


def export_opml(config: cfg.Config) -> str:
    """Render the sources of `config` as an OPML 2.0 document.

    Args:
        config: a loaded config.

    Returns:
        The document, with one `<outline type="rss">` per source.
    """
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = f"{config.settings.site_title} feeds"
    ET.SubElement(head, "dateCreated").text = formatdate(usegmt=True)
    body = ET.SubElement(root, "body")
    for source in config.sources:
        ET.SubElement(body, "outline", _outline_attributes(source))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _outline_attributes(source: SourceConfig) -> dict[str, str]:
    attributes = {"type": "rss", "text": source.title or source.url}
    if source.title:
        attributes["title"] = source.title
    attributes["xmlUrl"] = source.url
    if source.tags:
        attributes["category"] = ",".join(source.tags)
    return attributes


# -- validation and writing ---------------------------------------------------------------


def _new_entry(
    url: str, title: str | None, tags: Sequence[str], interval: str | None
) -> dict[str, object]:
    entry: dict[str, object] = {"url": url.strip()}
    if title and title.strip():
        entry["title"] = title.strip()
    if tags:
        entry["tags"] = list(dict.fromkeys(tags))
    if interval is not None:
        entry["interval"] = interval
    return entry


def _check_entry(config: cfg.Config, entry: Mapping[str, object]) -> SourceConfig:
    try:
        return cfg.parse_source(entry, config.settings)
    except cfg.InvalidValue as e:
        raise ConfigError(config.path, None, f"cannot add {entry.get('url')!r}: {e}") from None


def _append_entries(config: cfg.Config, entries: Sequence[Mapping[str, object]]) -> None:
    path = config.path
    text = path.read_text(encoding="utf-8")
    new_text = _append_tables(path, text, entries)
    cfg.parse_config(path, new_text)  # never write a file that would not load
    _write_atomically(path, new_text)


def _append_tables(path: Path, text: str, entries: Sequence[Mapping[str, object]]) -> str:
    doc = tomlkit.parse(text)
    feeds = doc.get("feeds")
    if feeds is None:
        feeds = tomlkit.aot()
        doc.append("feeds", feeds)
    elif not isinstance(feeds, AoT):
        raise ConfigError(path, None, "feeds must be written as [[feeds]] tables to be edited")
    for entry in entries:
        feeds.append(_table(entry))
    out = tomlkit.dumps(doc)
    if out.startswith(text) and text.strip():
        # A pure append: separate the new tables from what was there by a blank line.
        out = text.rstrip("\n") + "\n\n" + out[len(text) :].lstrip("\n")
    return out


def _table(entry: Mapping[str, object]) -> Table:
    table = tomlkit.table()
    for key, value in entry.items():
        table[key] = value
    return table


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file's text at once (a reader sees the old file or the new one). A
    config reached through a symbolic link is written where the link points, and the
    link stays."""
    path = path.resolve()
    mode = path.stat().st_mode & 0o777
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# -- reading OPML -----------------------------------------------------------------------------


def _read_opml(opml: bytes, name: str) -> Iterator[dict[str, object]]:
    try:
        root = SafeET.fromstring(opml)
    except ET.ParseError as e:
        line = e.position[0] if e.position else None
        raise ConfigError(name, line, f"not an OPML document: {e}") from None
    except DefusedXmlException as e:
        raise ConfigError(name, None, f"not an OPML document: {e}") from None
    body = root.find("body")
    if root.tag != "opml" or body is None:
        raise ConfigError(name, None, "not an OPML document: no <opml><body>")
    yield from _walk(body, ())


def _walk(parent: Element, tags: tuple[str, ...]) -> Iterator[dict[str, object]]:
    for outline in parent.findall("outline"):
        url = cfg.without_feed_scheme(outline.get("xmlUrl") or "")
        if url:
            yield _opml_entry(outline, url, tags)
        group = _slug(outline.get("text") or outline.get("title") or "")
        yield from _walk(outline, (*tags, group) if group and not url else tags)


def _opml_entry(outline: Element, url: str, tags: tuple[str, ...]) -> dict[str, object]:
    entry: dict[str, object] = {"url": url}
    title = (outline.get("title") or outline.get("text") or "").strip()
    if title and title != url:
        entry["title"] = title
    all_tags = [*tags, *_categories(outline.get("category") or "")]
    if all_tags:
        entry["tags"] = list(dict.fromkeys(all_tags))
    return entry


def _categories(category: str) -> list[str]:
    # OPML 2.0: comma-separated, each possibly a slash-delimited path ("/News/World").
    slugs: list[str] = []
    for item in category.split(","):
        slugs.extend(_slug(part) for part in item.split("/"))
    return [s for s in slugs if s]


def _slug(text: str) -> str:
    """Return `text` as a tag (lower-case, blanks to '-', accents dropped, cut to a tag's
    32 characters), or "" if it cannot be one (other scripts, punctuation: "C++")."""
    folded = unicodedata.normalize("NFKD", text.strip().lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    slug = re.sub(r"\s+", "-", folded)[:TAG_MAX_CHARS].strip("-")
    return slug if re.match(cfg.TAG_PATTERN, slug) else ""


TAG_MAX_CHARS = 32  # as `config.TAG_PATTERN` allows
