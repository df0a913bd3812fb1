"""The command line, driven as users drive it: check, add, import/export, poll, feeds,
db upgrade, and `aggregator run` as a real process serving real HTTP.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from aggregator.cli import cli
from aggregator.exceptions import StoreError
from aggregator.store import Store
from tests.conftest import killed_on_exit, slow_feeds, wait_while_running, write_config
from tests.feedserver import FeedServer


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_check_reports_file_line_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(
        '[settings]\nsite_title = "x"\n\n[[feeds]]\nurl = "https://a.example/f"\nintervl = "1h"\n'
    )
    code, output = _run("--config", str(path), "check")
    assert code != 0
    assert f"{path}:6:" in output and "intervl" in output and "did you mean 'interval'" in output


def test_check_reports_every_invalid_feed(tmp_path: Path) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(
        '[[feeds]]\nurl = "https://a.example/f"\ntags = ["Bad Tag"]\n\n'
        '[[feeds]]\nurl = "https://b.example/f"\n\n'
        '[[feeds]]\nurl = "https://c.example/f"\ninterval = "30 minutes"\n\n'
        '[[feeds]]\nurl = "https://B.example/f"\n'
    )
    code, output = _run("--config", str(path), "check")
    assert code != 0
    lines = output.removeprefix("Error: ").splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:3", f"{path}:10", f"{path}:13"]
    assert "feed #1: tags" in lines[0] and "feed #3: interval" in lines[1]
    assert "duplicate feed 'https://B.example/f' (first listed on line 5)" in lines[2]


def test_remove_takes_out_the_feed_that_broke_the_config(tmp_path: Path) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(
        '[[feeds]]\nurl = "https://a.example/f"\n\n'
        '[[feeds]]\nurl = "https://b.example/f"\ninterval = "30 minutes"\n'
    )
    code, output = _run("--config", str(path), "remove", "https://b.example/f")
    assert code == 0 and "removed https://b.example/f" in output, output
    code, output = _run("--config", str(path), "check")
    assert code == 0 and "ok, 1 source" in output


def test_run_refuses_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "agg.toml"
    path.write_text("[settings]\nport = 'eighty'\n")
    for command in ("run", "worker", "poll"):
        code, output = _run("--config", str(path), command)
        assert code != 0 and f"{path}:2:" in output, command


def test_resume_polls_again_a_feed_disabled_by_410_once_it_is_back(
    tmp_path: Path, sqlite_url: str, feed_server: FeedServer
) -> None:
    """A 410 disables the feed (the worker never asks again on its own); when the
    publisher brings it back, `resume` is how the operator says so."""
    feed_server.route("/comeback", status=410)
    path = write_config(tmp_path / "agg.toml", sqlite_url, [feed_server.url("comeback")])
    assert _run("--config", str(path), "poll")[0] == 0
    code, table = _run("--config", str(path), "feeds")
    assert "disabled" in table and "410" in table, table
    feed_server.route(
        "/comeback",
        body=(feed_server.root / "world.rss").read_bytes(),  # type: ignore[operator]
        headers={"Content-Type": "application/rss+xml"},
    )
    assert "0 feeds" in _run("--config", str(path), "poll", "--all")[1]  # still disabled

    code, output = _run("--config", str(path), "resume", "1")
    assert code == 0 and "enabled again (it was disabled: " in output and "410" in output
    code, output = _run("--config", str(path), "poll")
    assert code == 0 and "1 feed: 1 ok" in output and "3 new entries" in output, output
    assert "enabled again" not in _run("--config", str(path), "resume", "1")[1]


def test_remove_finds_a_source_by_the_url_its_feed_moved_to(
    tmp_path: Path, sqlite_url: str, feed_server: FeedServer
) -> None:
    """`feeds` shows where a feed moved (301); `remove` takes that URL too."""
    feed_server.route_redirect("/old", "/world.rss", status=301)
    path = write_config(tmp_path / "agg.toml", sqlite_url, [feed_server.url("old")])
    assert _run("--config", str(path), "poll")[0] == 0
    code, output = _run("--config", str(path), "remove", feed_server.url("world.rss"))
    assert code == 0 and f"removed {feed_server.url('old')}" in output, output
    assert feed_server.url("old") not in path.read_text()


def test_add_checks_its_options_before_fetching_anything(tmp_path: Path, sqlite_url: str) -> None:
    """A bad tag or interval is refused before the URL is fetched (nothing listens on
    port 9 here: a fetch would fail with a connection error instead), and nothing is
    written."""
    path = write_config(tmp_path / "agg.toml", sqlite_url, [])
    before = path.read_text()
    for option in (["--tag", "Bad Tag"], ["--interval", "2m"]):
        code, output = _run("--config", str(path), "add", "http://127.0.0.1:9/feed.xml", *option)
        assert code != 0 and "cannot add 'http://127.0.0.1:9/feed.xml'" in output, output
        assert "refused" not in output.lower() and "feed:" not in output
    assert path.read_text() == before


def test_add_of_a_refused_address_names_the_setting_that_allows_it(
    tmp_path: Path, sqlite_url: str, feed_server: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", sqlite_url, [], extra="allowed_networks = []")
    code, output = _run("--config", str(path), "add", feed_server.url("world.rss"))
    assert code != 0 and "refused address 127.0.0.1 (loopback)" in output
    assert "allow_private_addresses = true" in output and "--no-check" not in output
    code, output = _run("--config", str(path), "add", "http://127.0.0.1:9/nothing-here")
    assert code != 0 and "allow_private_addresses" in output


def test_add_then_export_and_import_round_trip(tmp_path: Path, sqlite_url: str) -> None:
    path = write_config(tmp_path / "agg.toml", sqlite_url, [])
    path.write_text("# my feeds, keep this comment\n" + path.read_text())
    assert (
        _run(
            "--config",
            str(path),
            "add",
            "https://a.example/feed.xml",
            "--no-check",  # a.example is not served: add as given
            "--title",
            "A",
            "--tag",
            "world",
        )[0]
        == 0
    )
    code, output = _run("--config", str(path), "add", "https://a.example/feed.xml", "--no-check")
    assert code != 0 and "already" in output
    code, opml = _run("--config", str(path), "export")
    assert code == 0 and 'xmlUrl="https://a.example/feed.xml"' in opml

    other = write_config(tmp_path / "other.toml", sqlite_url, [])
    (tmp_path / "subs.opml").write_text(opml)
    assert _run("--config", str(other), "import", str(tmp_path / "subs.opml"))[0] == 0
    assert "# my feeds, keep this comment" in path.read_text()
    code, output = _run("--config", str(other), "check")
    assert code == 0 and "1 source" in output and "1 sources" not in output
    assert 'title = "A"' in other.read_text() and '"world"' in other.read_text()

    code, output = _run("--config", str(path), "remove", "https://a.example/feed.xml")
    assert code == 0 and "removed https://a.example/feed.xml" in output
    assert (
        "a.example" not in path.read_text() and "# my feeds, keep this comment" in path.read_text()
    )
    code, output = _run("--config", str(path), "remove", "https://a.example/feed.xml")
    assert code != 0 and "not in the config file" in output


def test_poll_and_feeds_show_status(
    tmp_path: Path,
    sqlite_url: str,
    recent_feed_server: FeedServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed_server = recent_feed_server  # world.rss published within the last day
    feed_server.route("/broken", status=503)
    spaced = b"\n  " + (Path(__file__).parent / "data" / "world.rss").read_bytes()
    feed_server.route("/spaced", body=spaced, headers={"Content-Type": "application/rss+xml"})
    urls = [feed_server.url("world.rss"), feed_server.url("broken"), feed_server.url("spaced")]
    path = write_config(tmp_path / "agg.toml", sqlite_url, urls)
    with caplog.at_level(logging.WARNING, logger="aggregator"):
        code, output = _run("--config", str(path), "poll")
    assert code == 0
    # each failure logged once the progress bar is done (not into its line)
    assert caplog.messages == [f"{feed_server.url('broken')}: fetch: HTTP 503"]
    # tests/data's dated entries are older than the grouping window: not news
    assert (
        "3 feeds: 2 ok, 0 not modified, 1 failed; 6 new entries; 3 grouped into stories, "
        "3 kept apart as old news (published more than 3 days before first seen)"
    ) in output
    code, table = _run("--config", str(path), "feeds")
    assert code == 0
    lines = table.splitlines()
    header = ["ID", "STATUS", "ENTRIES", "PER DAY", "ERRORS", "LAST FETCH", "LAST OK", "NEXT"]
    assert [name for name in header if name in lines[0]] == header
    world, broken, spaced = (row for row in map(str.split, lines[1:]) if row[0].isdigit())
    # 3 entries published within the week: 0.4 a day; fetched now, and a success
    assert world[1:5] == ["ok", "3", "0.4", "0"] and world[5:9] == ["0s", "ago", "0s", "ago"]
    assert broken[1:5] == ["error", "0", "0.0", "1"]
    assert broken[5:8] == ["0s", "ago", "-"]  # fetched, never a success
    assert "last error: fetch: HTTP 503" in table and "to do:" not in table  # only wait
    assert f"url: {feed_server.url('world.rss')}" in table  # a titled source's address
    # a fetch that worked with a defect in the document: a note, not an error
    assert "note: whitespace before the XML declaration (ignored)" in table
    code, failing = _run("--config", str(path), "feeds", "--failing")
    assert code == 0
    assert feed_server.url("broken") in failing and "last error: fetch: HTTP 503" in failing
    assert "Harbour Times" not in failing and "note:" not in failing
    assert len(failing.splitlines()) == 3  # the header, the feed, its error
    code, output = _run("--config", str(path), "poll")
    assert "0 feeds" in output
    assert "0 grouped into stories" in output
    code, output = _run("--config", str(path), "poll", "--all")
    assert output.strip().endswith(
        "3 feeds: 0 ok, 2 not modified, 1 failed; 0 new entries; 0 grouped into stories"
    )

    # the failing source, paused and resumed, then removed, by the ID the table shows
    code, output = _run("--config", str(path), "pause", broken[0])
    assert code == 0 and f"paused {feed_server.url('broken')}" in output
    code, output = _run("--config", str(path), "pause", broken[0])
    assert code == 0 and f"{feed_server.url('broken')} is already paused" in output
    code, table = _run("--config", str(path), "feeds")
    assert any(row.split()[:2] == [broken[0], "off"] for row in table.splitlines())
    code, output = _run("--config", str(path), "resume", broken[0])
    assert code == 0 and f"resumed {feed_server.url('broken')}" in output
    code, output = _run("--config", str(path), "remove", broken[0])
    assert code == 0 and f"removed {feed_server.url('broken')}" in output
    assert feed_server.url("broken") not in path.read_text()
    code, output = _run("--config", str(path), "remove", "999")
    assert code != 0 and "no feed 999" in output


def test_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agg.toml", f"sqlite:///{tmp_path}/sub/new.db", [])
    code, _ = _run("--config", str(path), "db", "upgrade")
    assert code == 0 and (tmp_path / "sub" / "new.db").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(command: str, tmp_path: Path, feeds: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """`aggregator COMMAND` in a process of its own on a free port, SQLite in tmp_path."""
    path = write_config(tmp_path / "agg.toml", "sqlite:///data/agg.db", feeds)
    port = _free_port()
    executable = shutil.which("aggregator") or str(Path(sys.executable).with_name("aggregator"))
    env = {**os.environ, "AGGREGATOR_PORT": str(port), "AGGREGATOR_CONFIG": str(path)}
    pipe, merged = subprocess.PIPE, subprocess.STDOUT
    process = subprocess.Popen(
        [executable, command], cwd=tmp_path, env=env, stdout=pipe, stderr=merged
    )
    return process, port


@pytest.mark.slow
def test_run_serves_polled_entries_over_http(tmp_path: Path, feed_server: FeedServer) -> None:
    process, port = _start("run", tmp_path, [feed_server.url("world.atom")])
    try:
        entries = _wait_for_entries(f"http://127.0.0.1:{port}/feed.atom", 2)
        assert {e.title for e in entries} == {
            "Danube floods: evacuations widen as levees strain",
            "Markets & money: bank rate unchanged",
        }
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
        assert (tmp_path / "data" / "agg.db").exists()
    finally:
        process.terminate()  # SIGTERM, as a service manager stops it: a clean stop
        output = process.communicate(timeout=10)[0].decode()
    assert f"Serving on http://127.0.0.1:{port}/" in output
    assert process.returncode == 0 and "worker: stopped" in output, output


def test_web_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """A service manager stops `aggregator web` with SIGTERM: exit 0, as `run` does."""
    process, port = _start("web", tmp_path, [])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
                break
            except OSError:
                time.sleep(0.2)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert process.returncode == 0, output


def test_run_on_a_port_in_use_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        path = write_config(tmp_path / "agg.toml", "sqlite:///data/agg.db", [])
        env = {**os.environ, "AGGREGATOR_PORT": str(port), "AGGREGATOR_CONFIG": str(path)}
        for command in ("run", "web"):
            executable = shutil.which("aggregator") or str(
                Path(sys.executable).with_name("aggregator")
            )
            done = subprocess.run(
                [executable, command], cwd=tmp_path, env=env, capture_output=True, timeout=60
            )
            output = (done.stdout + done.stderr).decode()
            assert done.returncode == 1, output
            assert f"Error: cannot listen on 127.0.0.1:{port}: Address already in use" in output
            assert "Traceback" not in output and "Serving on" not in output
            assert "worker:" not in output  # the worker never started


def _wait_for_entries(url: str, count: int, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                entries = feedparser.parse(response.read()).entries
            if len(entries) >= count:
                return list(entries)
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never showed {count} entries")


def test_poll_groups_the_same_story_from_two_feeds(
    tmp_path: Path,
    sqlite_url: str,
    recent_feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`poll` groups as the worker does: the same articles published by a second outlet
    at its own addresses (wire copy) become stories with two sources, listed by
    `aggregator stories` at once."""
    assert recent_feed_server.root is not None
    original = (recent_feed_server.root / "world.rss").read_bytes()
    wire = original.replace(b"Harbour Times", b"Wire Service")
    wire = wire.replace(b"harbour.example.net", b"wire.example.org")
    recent_feed_server.route(
        "/wire.rss", body=wire, headers={"Content-Type": "application/rss+xml"}
    )
    urls = [recent_feed_server.url("world.rss"), recent_feed_server.url("wire.rss")]
    path = write_config(tmp_path / "agg.toml", sqlite_url, urls)
    code, output = _run("--config", str(path), "poll")
    assert code == 0, output
    assert "6 new entries; 6 grouped into stories" in output
    monkeypatch.delenv("COLUMNS", raising=False)
    code, listing = _run("--config", str(path), "stories")
    assert code == 0
    assert not any(line.endswith("…") for line in listing.splitlines())  # to a pipe: whole
    assert listing.splitlines()[0].split()[:5] == ["ID", "SOURCES", "ENTRIES", "UPDATED", "(UTC)"]
    rows = [line.split() for line in listing.splitlines()[1:]]
    assert len(rows) == 3, listing
    assert all(row[1] == "2" and row[2] == "2" for row in rows), listing
    narrow = CliRunner().invoke(cli, ["--config", str(path), "stories"], env={"COLUMNS": "80"})
    lines = narrow.output.splitlines()[1:]
    assert all(len(line) <= 80 for line in lines) and any(line.endswith("…") for line in lines)


def test_a_page_two_feeds_carry_is_one_source_of_its_story(
    tmp_path: Path, sqlite_url: str, recent_feed_server: FeedServer
) -> None:
    """A second feed carrying the same pages (one site's two feeds) adds no source: the
    stories it joins still have one source each, so `aggregator stories` lists none."""
    assert recent_feed_server.root is not None
    original = (recent_feed_server.root / "world.rss").read_bytes()
    recent_feed_server.route(
        "/front.rss",
        body=original.replace(b"Harbour Times", b"Harbour Times: front page"),
        headers={"Content-Type": "application/rss+xml"},
    )
    urls = [recent_feed_server.url("world.rss"), recent_feed_server.url("front.rss")]
    path = write_config(tmp_path / "agg.toml", sqlite_url, urls)
    code, output = _run("--config", str(path), "poll")
    assert code == 0, output
    code, listing = _run("--config", str(path), "stories")
    assert code == 0
    assert listing == "no story has two sources yet\n", listing


def test_poll_shows_one_progress_bar_over_overlapping_claims(
    tmp_path: Path, sqlite_url: str, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aggregator.update

    monkeypatch.setattr(aggregator.update, "CLAIM_BATCH", 1)  # two feeds: two claims
    urls = [feed_server.url("world.rss"), feed_server.url("world.rss") + "?copy"]
    path = write_config(tmp_path / "agg.toml", sqlite_url, urls)
    code, output = _run("--config", str(path), "poll")
    assert code == 0
    assert "2 feeds: 2 ok" in output
    assert output.count("polling") == 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_poll_saves_what_is_in_flight_and_frees_the_rest(
    tmp_path: Path, sqlite_url: str, feed_server: FeedServer, stop: signal.Signals
) -> None:
    settings = 'max_connections = 2\nmax_per_host = 2\nlease_seconds = "10m"'
    path = write_config(tmp_path / "agg.toml", sqlite_url, slow_feeds(feed_server, 40), settings)
    store = Store(sqlite_url)
    command = [sys.executable, "-m", "aggregator", "--config", str(path), "poll"]
    spawned = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with killed_on_exit(spawned) as process:
        wait_while_running(process, lambda: _entries(store))
        process.send_signal(stop)  # Ctrl-C, or a service manager's stop
        output = process.communicate(timeout=15)[0].decode()
    assert process.returncode == 130, output
    assert "interrupted: the rest is left to the next poll" in output
    fetched = [f for f in store.get_feeds() if f.last_status == "ok"]
    assert 1 <= len(fetched) < 40 and store.count_entries() == 3 * len(fetched)
    free = store.claim_due_feeds("next", datetime.now(UTC), timedelta(minutes=5), 100)
    assert len(free) == 40 - len(fetched)  # not held for the ten minutes of the lease
    store.close()


def _entries(store: Store) -> int:
    """Entries stored so far; 0 before the process has created the database."""
    try:
        return store.count_entries()
    except StoreError:
        return 0


def test_db_backup_copies_the_store_into_a_new_file(tmp_path: Path, sqlite_url: str) -> None:
    path = write_config(tmp_path / "agg.toml", sqlite_url, [])
    code, output = _run("--config", str(path), "db", "backup", str(tmp_path / "copy.db"))
    assert code == 0 and f"to {tmp_path / 'copy.db'}" in output
    assert (tmp_path / "copy.db").stat().st_size > 0
    code, output = _run("--config", str(path), "db", "backup", str(tmp_path / "copy.db"))
    assert code != 0 and "exists" in output
    code, output = _run("--config", str(path), "db", "backup", str(tmp_path / "no" / "c.db"))
    assert code != 0 and f"folder {tmp_path / 'no'} does not exist" in output
    code, output = _run("--config", str(path), "db", "vacuum")
    assert code == 0 and re.search(r"vacuumed sqlite:///\S+: [\d,]+ -> [\d,]+ bytes", output)


def test_feeds_times_read_in_the_unit_that_fits() -> None:
    from aggregator.cli import _ago

    now = datetime(2026, 12, 8, tzinfo=UTC)
    spans = [5, 119, 120, 7199, 7200, 172799, 172800, 30 * 86400]
    assert [_ago(now - timedelta(seconds=s), now) for s in spans] == [
        "5s ago", "119s ago", "2m ago", "119m ago", "2h ago", "47h ago", "2d ago", "30d ago"
    ]  # fmt: skip
    assert _ago(now + timedelta(days=3), now) == "in 3d" and _ago(None, now) == "-"
