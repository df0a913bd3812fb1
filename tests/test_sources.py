"""Tests for aggregator.sources: adding feeds to the file, OPML import and export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.exceptions import ConfigError, FeedExistsError
from aggregator.sources import (
    add_source,
    export_opml,
    import_opml,
    remove_source,
    set_enabled,
)

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "aggregator.toml"

FILE = """\
# Top comment, kept.
[settings]
site_title = "Mine"  # inline comment, kept

# Feeds below.
[[feeds]]
url = "https://example.com/feed.xml"  # first feed
tags = ["world"]

# Trailing comment, kept.
"""

OPML = b"""<?xml version="1.0"?>
<opml version="2.0">
  <head><title>Exported</title></head>
  <body>
    <outline text="Top Level" title="Top Level" xmlUrl="https://top.example/rss"/>
    <outline text="Science News">
      <outline text="Nature" type="rss" xmlUrl="https://nature.example/feed" category="biology"/>
      <outline text="Deep">
        <outline text="https://deep.example/atom" xmlUrl="https://deep.example/atom"/>
      </outline>
    </outline>
    <outline text="Not a tag!">
      <outline title="Dup" text="Dup" xmlUrl="https://EXAMPLE.com:443/feed.xml"/>
    </outline>
  </body>
</opml>
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    target = tmp_path / "aggregator.toml"
    target.write_text(FILE, encoding="utf-8")
    return target


def test_add_keeps_comments_and_loads(path: Path) -> None:
    add_source(path, "https://new.example/rss", title="New", tags=["world", "tech"], interval="1h")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(FILE.rstrip("\n") + "\n\n[[feeds]]\n")
    config = load_config(path, env={})
    new = config.sources[-1]
    assert (new.url, new.title, new.tags, new.interval) == (
        "https://new.example/rss",
        "New",
        ("world", "tech"),
        3600,
    )
    assert new.line == text.splitlines().index("[[feeds]]", 6) + 1


def test_add_without_options_writes_only_the_url(path: Path) -> None:
    add_source(path, "https://new.example/rss")
    assert path.read_text(encoding="utf-8").endswith('[[feeds]]\nurl = "https://new.example/rss"\n')


def test_add_to_a_file_without_feeds(tmp_path: Path) -> None:
    target = tmp_path / "a.toml"
    target.write_text("# empty\n", encoding="utf-8")
    add_source(target, "https://a.example/")
    add_source(target, "https://b.example/", tags=["x"])
    assert [s.url for s in load_config(target, env={}).sources] == [
        "https://a.example/",
        "https://b.example/",
    ]
    assert target.read_text(encoding="utf-8").startswith("# empty\n\n[[feeds]]\n")


def test_a_config_reached_through_a_symlink_is_edited_where_it_lives(
    path: Path, tmp_path: Path
) -> None:
    (tmp_path / "etc").mkdir()
    real = path.rename(tmp_path / "etc" / "real.toml")
    link = tmp_path / "link.toml"
    link.symlink_to(Path("etc") / "real.toml")
    add_source(link, "https://linked.example/feed")
    assert link.is_symlink()
    assert "https://linked.example/feed" in real.read_text(encoding="utf-8")


def test_add_refuses_a_duplicate(path: Path) -> None:
    with pytest.raises(FeedExistsError, match="line 6"):
        add_source(path, "HTTPS://Example.com:443/feed.xml")
    with pytest.raises(FeedExistsError, match="line 6"):  # the same document asked for
        add_source(path, "https://example.com/news/../feed.xml")
    assert path.read_text(encoding="utf-8") == FILE


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"url": "ftp://x.example/"}, "not an http(s) URL"),
        ({"url": "https://x.example/", "tags": ["Bad Tag"]}, "tags must match"),
        ({"url": "https://x.example/", "interval": "1m"}, "outside"),
        ({"url": "https://x.example/", "interval": "often"}, "not a duration"),
    ],
)
def test_add_validates_like_the_loader(path: Path, kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        add_source(path, **kwargs)  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == FILE
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_add_refuses_a_file_that_does_not_load(tmp_path: Path) -> None:
    target = tmp_path / "a.toml"
    target.write_text("[settings]\nprot = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'port'"):
        add_source(target, "https://a.example/")


THREE = """\
# Top comment, kept.
[settings]
site_title = "Mine"

# Feeds below (a blank line follows: this is about all of them, kept).

# Alpha: the first.
[[feeds]]
url = "https://alpha.example/feed"  # inline
tags = ["world"]

# Beta: goes with beta.
# A second line about beta.
[[feeds]]
url = "https://beta.example/feed"
tags = [
  "tech",
]

# Gamma.
[[feeds]]
url = "https://gamma.example/feed"
"""


def test_remove_mends_a_file_that_only_the_removed_table_broke(tmp_path: Path) -> None:
    """An edit left one feed invalid (the file no longer loads); removing that feed
    works and leaves a file that loads. A file with other problems is left alone."""
    path = tmp_path / "aggregator.toml"
    broken = THREE.replace(
        'url = "https://beta.example/feed"',
        'url = "https://beta.example/feed"\ninterval = "30 minutes"',
    )
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError, match="interval"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="interval"):  # not the culprit: nothing changes
        remove_source(path, "https://gamma.example/feed")
    assert path.read_text(encoding="utf-8") == broken
    removed = remove_source(path, "https://BETA.example/feed")
    assert removed.url == "https://beta.example/feed"
    assert [s.url for s in load_config(path, env={}).sources] == [
        "https://alpha.example/feed",
        "https://gamma.example/feed",
    ]


def test_remove_takes_out_the_table_and_its_own_comments(tmp_path: Path) -> None:
    path = tmp_path / "aggregator.toml"
    path.write_text(THREE, encoding="utf-8")
    removed = remove_source(path, "https://BETA.example:443/feed")  # as the loader matches
    assert removed.url == "https://beta.example/feed"
    assert path.read_text(encoding="utf-8") == THREE.replace(
        '# Beta: goes with beta.\n# A second line about beta.\n[[feeds]]\nurl = "https://beta.'
        'example/feed"\ntags = [\n  "tech",\n]\n\n',
        "",
    )
    remove_source(path, "https://gamma.example/feed")  # the last table: no blank line left
    assert path.read_text(encoding="utf-8").endswith('tags = ["world"]\n')
    remove_source(path, "https://alpha.example/feed")
    text = path.read_text(encoding="utf-8")
    assert text.endswith("(a blank line follows: this is about all of them, kept).\n")
    assert load_config(path, env={}).sources == ()
    with pytest.raises(ConfigError, match="not in the config file"):
        remove_source(path, "https://alpha.example/feed")

    path.write_bytes(THREE.replace("\n", "\r\n").encode())  # a file edited on Windows
    remove_source(path, "https://gamma.example/feed")
    gamma = '\n# Gamma.\n[[feeds]]\nurl = "https://gamma.example/feed"\n'
    assert path.read_bytes() == THREE.removesuffix(gamma).replace("\n", "\r\n").encode()


def test_import_takes_nested_outlines_with_tags(path: Path) -> None:
    added, skipped = import_opml(path, OPML)
    assert added == [
        "https://top.example/rss",
        "https://nature.example/feed",
        "https://deep.example/atom",
    ]
    assert skipped == ["https://EXAMPLE.com:443/feed.xml"]
    by_url = {s.url: s for s in load_config(path, env={}).sources}
    assert by_url["https://top.example/rss"].title == "Top Level"
    assert by_url["https://top.example/rss"].tags == ()
    assert by_url["https://nature.example/feed"].tags == ("science-news", "biology")
    assert by_url["https://deep.example/atom"].title is None
    assert by_url["https://deep.example/atom"].tags == ("science-news", "deep")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(FILE.rstrip("\n"))


def test_import_reads_feed_urls_as_web_addresses(path: Path) -> None:
    """OPML exported by some readers names feeds "feed://...": read as http, as `add`
    reads them, instead of refusing the whole file."""
    opml = (
        b'<opml version="2.0"><body><outline text="A" xmlUrl="feed://a.example/rss"/>'
        b'<outline text="B" xmlUrl="feed:https://b.example/atom"/></body></opml>'
    )
    added, _ = import_opml(path, opml)
    assert added == ["http://a.example/rss", "https://b.example/atom"]


def test_import_keeps_folder_names_with_accents_or_too_long_as_tags(path: Path) -> None:
    """Folders named in French or Spanish, or at length, still tag their feeds; a name
    in another script or of punctuation cannot be a tag and is left out."""
    opml = (
        "<opml version='2.0'><body>"
        "<outline text='\u00dcn\u00efcode \u00d1ews'><outline xmlUrl='https://a.example/f'/>"
        "</outline><outline text='A very long folder name that is longer than a tag'>"
        "<outline xmlUrl='https://b.example/f'/></outline>"
        "<outline text='\u65e5\u672c'><outline xmlUrl='https://c.example/f' category='C++'/>"
        "</outline></body></opml>"
    ).encode()
    import_opml(path, opml)
    tags = {s.url: s.tags for s in load_config(path, env={}).sources}
    assert tags["https://a.example/f"] == ("unicode-news",)
    assert tags["https://b.example/f"] == ("a-very-long-folder-name-that-is",)
    assert tags["https://c.example/f"] == ()


def test_import_twice_skips_everything(path: Path) -> None:
    import_opml(path, OPML)
    before = path.read_text(encoding="utf-8")
    added, skipped = import_opml(path, OPML)
    assert added == [] and len(skipped) == 4
    assert path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    "document",
    [b"not xml", b"<html><body/></html>", b'<!DOCTYPE x [<!ENTITY a "b">]><opml><body/></opml>'],
)
def test_import_refuses_non_opml(path: Path, document: bytes) -> None:
    with pytest.raises(ConfigError, match="^subs.opml(:1)?: not an OPML document"):
        import_opml(path, document, "subs.opml")


def test_import_refuses_an_invalid_feed_and_writes_nothing(path: Path) -> None:
    document = b'<opml version="2.0"><body><outline xmlUrl="https://ok.example/"/>' + (
        b'<outline xmlUrl="javascript:alert(1)"/></body></opml>'
    )
    with pytest.raises(ConfigError, match="not an http"):
        import_opml(path, document)
    assert path.read_text(encoding="utf-8") == FILE


def test_export_is_opml_2(tmp_path: Path) -> None:
    document = export_opml(load_config(SHIPPED, env={}))
    assert '<opml version="2.0">' in document
    assert "<dateCreated>" in document and "<title>Aggregator feeds</title>" in document
    assert document.count('type="rss"') == len(load_config(SHIPPED, env={}).sources)


def test_export_import_round_trip(tmp_path: Path) -> None:
    original = tmp_path / "original.toml"
    shutil.copy(SHIPPED, original)
    add_source(original, "https://x.example/untitled", tags=["a", "b-c"])
    add_source(original, "https://y.example/", title='Quotes "&" <more>')
    source = load_config(original, env={})

    target = tmp_path / "copy.toml"
    target.write_text("# imported below\n[settings]\nport = 9000\n", encoding="utf-8")
    added, skipped = import_opml(target, export_opml(source).encode("utf-8"))
    copy = load_config(target, env={})

    def summary(config: object) -> list[tuple[str, str | None, tuple[str, ...]]]:
        return [(s.url, s.title, s.tags) for s in config.sources]  # type: ignore[attr-defined]

    assert summary(copy) == summary(source)
    assert (len(added), skipped) == (len(source.sources), [])
    assert target.read_text(encoding="utf-8").startswith("# imported below\n")
    assert copy.settings.port == 9000


def test_pause_and_resume_edit_one_flag_in_place(tmp_path: Path) -> None:
    path = tmp_path / "aggregator.toml"
    path.write_text(THREE, encoding="utf-8")
    paused = set_enabled(path, "https://alpha.example/feed", False)
    assert paused.enabled is False
    set_enabled(path, "https://alpha.example/feed", True)  # the file as it was
    assert path.read_text(encoding="utf-8") == THREE
    set_enabled(path, "https://alpha.example/feed", False)
    # added after alpha's last key, not after beta's comments that follow it
    assert path.read_text(encoding="utf-8") == THREE.replace(
        'tags = ["world"]\n', 'tags = ["world"]\nenabled = false\n'
    )
    with_comment = path.read_text(encoding="utf-8").replace(
        "enabled = false", "enabled = false  # noisy this week"
    )
    path.write_text(with_comment, encoding="utf-8")
    set_enabled(path, "https://alpha.example/feed", True)  # the line rewritten, comment kept
    assert "enabled = true  # noisy this week" in path.read_text(encoding="utf-8")
    assert [s.enabled for s in load_config(path, env={}).sources] == [True, True, True]
    before = path.read_text(encoding="utf-8")
    set_enabled(path, "https://beta.example/feed", True)  # already: nothing written
    assert path.read_text(encoding="utf-8") == before
    set_enabled(path, "https://gamma.example/feed", False)  # the last table
    assert path.read_text(encoding="utf-8").endswith(
        'url = "https://gamma.example/feed"\nenabled = false\n'
    )
    with pytest.raises(ConfigError, match="not in the config file"):
        set_enabled(path, "https://delta.example/feed", False)


def test_an_edit_that_would_change_other_sources_is_refused(tmp_path: Path) -> None:
    """The line scan is fooled by a header written inside a multi-line string; the
    check before writing catches it, and the file is left as it was."""
    tricky = (
        '[[feeds]]\nurl = "https://a.example/feed"\ntitle = """A\n'
        '[[feeds]] in a title"""\n\n[[feeds]]\nurl = "https://b.example/feed"\n'
    )
    path = tmp_path / "aggregator.toml"
    path.write_text(tricky, encoding="utf-8")
    with pytest.raises(ConfigError, match="could not be edited safely"):
        remove_source(path, "https://a.example/feed")
    assert path.read_text(encoding="utf-8") == tricky
