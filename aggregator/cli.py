"""The command line: `aggregator [--config PATH] COMMAND`. An entry point that composes
config, store, worker and web; it holds no pipeline logic of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from aggregator import __version__
from aggregator.config import Config, find_source, load_config, normalise_url, resolve_config_path
from aggregator.exceptions import AggregatorError, ConfigError, FeedExistsError
from aggregator.models import REFUSED_ADDRESS, FeedState, UpdateResult, error_advice
from aggregator.wording import counted, truncate_words

log = logging.getLogger("aggregator")


class _State:
    def __init__(self, config_option: str | None) -> None:
        self.path = resolve_config_path(config_option)

    def config(self) -> Config:
        try:
            return load_config(self.path)
        except ConfigError as e:
            raise click.ClickException(str(e)) from e

    def store(self, config: Config) -> Any:
        from aggregator.store import Store

        store = Store(config.settings.database_url)
        click.get_current_context().call_on_close(store.close)
        store.upgrade()
        return store


pass_state = click.make_pass_decorator(_State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    help="Config file (default: $AGGREGATOR_CONFIG, else config/aggregator.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.version_option(__version__, prog_name="aggregator")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None, verbose: bool) -> None:
    """Self-hosted news feed aggregator."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = _State(config_option)


@cli.command()
@pass_state
def check(state: _State) -> None:
    """Validate the config file; exit non-zero naming file, line and problem."""
    config = state.config()
    click.echo(f"{config.path}: ok, {counted(len(config.sources), 'source')}")


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: _State) -> None:
    """Create or upgrade the database schema (also run at every start)."""
    config = state.config()
    state.store(config)
    click.echo(f"database at the newest schema: {config.settings.database_url}")


@db.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def db_backup(state: _State, target: Path) -> None:
    """Copy the SQLite database into a new file TARGET, consistently, while the service
    runs (on PostgreSQL, use pg_dump)."""
    from aggregator.exceptions import StoreError

    config = state.config()
    try:
        size = state.store(config).backup(target)
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"backed up {config.settings.database_url} to {target} ({size:,} bytes)")


@db.command("vacuum")
@pass_state
def db_vacuum(state: _State) -> None:
    """Give the room of pruned entries back to the disk (SQLite; on PostgreSQL autovacuum
    does it). Pruning alone keeps the file's size, reused by new entries."""
    from aggregator.exceptions import StoreError

    config = state.config()
    try:
        sizes = state.store(config).vacuum()
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    if sizes is None:
        click.echo("PostgreSQL: autovacuum gives the room back (VACUUM FULL shrinks the files)")
    else:
        click.echo(f"vacuumed {config.settings.database_url}: {sizes[0]:,} -> {sizes[1]:,} bytes")


@cli.command()
@click.option("--all", "poll_all", is_flag=True, help="Poll every enabled feed, due or not.")
@pass_state
def poll(state: _State, poll_all: bool) -> None:
    """Fetch the due feeds once, store new entries, group them into stories, and print a
    summary."""
    from aggregator.scheduler import Worker, poll_options, stop_on_signals
    from aggregator.update import poll_due

    config = state.config()
    store = state.store(config)
    worker = Worker(config, store)
    stop = threading.Event()
    bar: Any = None
    failed: list[UpdateResult] = []  # logged once the bar's line is done, not into it

    def on_claim(count: int) -> None:  # batches overlap: one bar that grows with each
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=count, label="polling", file=sys.stderr)
            bar.__enter__()
        else:
            bar.length += count

    def progress(result: UpdateResult) -> None:
        if result.error:
            failed.append(result)
        if bar is not None:
            bar.update(1)

    with stop_on_signals(stop.set):  # Ctrl-C: save what is in flight, free the rest
        try:
            summary = poll_due(
                store,
                poll_options(config),
                owner=f"{worker.name}/poll",
                force=poll_all,
                progress=progress,
                on_claim=on_claim,
                stopping=stop.is_set,
            )
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
            for result in failed:
                log.warning("%s: %s", result.url, result.error)
        grouping = "" if stop.is_set() else _group_now(worker.grouper, stop.is_set)
    if stop.is_set():
        click.echo(f"{summary.line()}; interrupted: the rest is left to the next poll")
        raise SystemExit(130)  # as a shell reports a command stopped by Ctrl-C
    click.echo(f"{summary.line()}; {grouping}")


def _group_now(grouper: Any, stopping: Callable[[], bool]) -> str:
    """Group what the poll stored, as the worker's tick would (until `stopping`), then
    hand the lease back so a running worker carries on without waiting for it to
    expire."""
    grouped = grouper.run(stopping=stopping)
    if grouped is None:
        return "grouping left to the worker that holds the grouper lease"
    grouper.release()
    kept = grouper.kept_apart
    if not kept:
        return f"{grouped} grouped into stories"
    return (
        f"{grouped - kept} grouped into stories, {kept} kept apart as old news "
        f"(published more than {_days(grouper.index_window)} before first seen)"
    )


@cli.command()
@pass_state
def worker(state: _State) -> None:
    """Run the scheduler: poll due feeds on every tick (the Procfile's `worker`)."""
    from aggregator.scheduler import Worker, lower_priority, settle_heap

    config = state.config()
    lower_priority(config.settings.worker_nice)
    click.echo(f"worker: ticking every {config.settings.tick_interval}s, config {config.path}")
    worker = Worker(config, state.store(config))
    settle_heap()
    worker.run_forever()


def _listening(config: Config) -> Any:
    """The web app's waitress server, bound to the configured address (so that a port
    already taken fails here, before anything else starts)."""
    import waitress

    from aggregator.web import create_app

    settings = config.settings
    app = create_app({"CONFIG_PATH": str(config.path)})
    try:
        return waitress.create_server(app, host=settings.host, port=settings.port, threads=8)
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e} "
            "(another aggregator running? set port in [settings], or AGGREGATOR_PORT)"
        ) from e


def _serve(server: Any, config: Config) -> None:
    click.echo(f"Serving on http://{config.settings.host}:{config.settings.port}/", err=False)
    sys.stdout.flush()
    server.run()


@cli.command()
@pass_state
def web(state: _State) -> None:
    """Serve the web app only (production: gunicorn, see the Procfile)."""
    from aggregator.scheduler import interrupted_by_signals

    config = state.config()
    state.store(config)
    server = _listening(config)
    with interrupted_by_signals():  # SIGTERM stops waitress cleanly, as Ctrl-C does
        _serve(server, config)


@cli.command()
@pass_state
def run(state: _State) -> None:
    """Run the worker and the web app in one process (the embedded default)."""
    from aggregator.scheduler import Worker, interrupted_by_signals

    config = state.config()
    store = state.store(config)
    server = _listening(config)
    worker = Worker(config, store)
    scheduler = worker.start_background()
    try:
        with interrupted_by_signals():  # waitress returns on SIGTERM as on Ctrl-C
            _serve(server, config)
    finally:
        worker.stop(scheduler)


@cli.command()
@click.argument("url")
@click.option("--title", help="Display title (default: the feed's own).")
@click.option("--tag", "tags", multiple=True, help="Tag; repeat for several.")
@click.option("--interval", help='Poll interval, e.g. "30m" (default: the global one).')
@click.option(
    "--no-check", is_flag=True, help="Add the URL as given, without fetching it (offline)."
)
@pass_state
def add(
    state: _State,
    url: str,
    title: str | None,
    tags: tuple[str, ...],
    interval: str | None,
    no_check: bool,
) -> None:
    """Add a source to the config file (comments and layout are kept).

    The URL is fetched first (as the worker would fetch it): a feed is added as is; of
    a web page, the feed it advertises is added instead. --no-check skips this.
    """
    from aggregator.sources import add_source, check_options

    try:
        check_options(state.path, url, title, tags, interval)  # before any fetch
        if not no_check:
            url = _discovered(state.config(), url)
        add_source(state.path, url, title=title, tags=tags, interval=interval)
    except (ConfigError, FeedExistsError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"added {url} to {state.path}")


def _discovered(config: Config, url: str) -> str:
    """The feed to add for `url` (see `aggregator.discover`), said on the terminal."""
    from aggregator.discover import DiscoveryError, find_feed

    try:
        found = find_feed(url, config.settings.fetch_options())
    except DiscoveryError as e:
        hint = "--no-check adds the URL as given"
        advice = error_advice(str(e))
        if advice is not None:  # a refused address: added as given, it would only fail
            hint = advice if REFUSED_ADDRESS in str(e) else f"{advice}; {hint}"
        raise click.ClickException(f"{e}\n({hint})") from e
    what = f"{found.title or '(untitled)'}, {counted(found.entries, 'entry', 'entries')}"
    if found.moved:
        click.echo(f"{found.requested} moved permanently to {found.url}: {what}")
    elif found.page is None:
        click.echo(f"feed: {what}")
    else:
        click.echo(f"{found.page} is a web page; the feed it advertises: {found.url} ({what})")
        for other in found.others:
            click.echo(f"  it also advertises {other}")
    return found.url


@cli.command()
@click.argument("url")
@pass_state
def remove(state: _State, url: str) -> None:
    """Remove a source, by URL or by the ID `aggregator feeds` shows, from the config
    file (its table and the comments right above it; everything else is kept). Its
    entries leave the digest and merged feeds; they stay stored (adding the source
    again brings them back) until retention prunes them."""
    from aggregator.sources import remove_source

    try:
        config_url = _config_url(state, url)
    except click.ClickException:
        if url.isdigit():
            raise
        config_url = url  # the config does not load: the source to remove may be why
    try:
        source = remove_source(state.path, config_url)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"removed {source.url} from {state.path}")


@cli.command()
@click.argument("url")
@pass_state
def pause(state: _State, url: str) -> None:
    """Stop polling a source, by URL or ID, keeping it and its entries
    (`enabled = false` in its table of the config file)."""
    _set_enabled(state, url, False)


@cli.command()
@click.argument("url")
@pass_state
def resume(state: _State, url: str) -> None:
    """Poll a paused source again (`enabled = true`), or one the service disabled
    because its server answered 410 Gone (when the feed came back)."""
    config_url = _set_enabled(state, url, True)
    reason = state.store(state.config()).enable_feed(config_url, datetime.now(UTC))
    if reason is not None:
        click.echo(f"enabled again (it was disabled: {reason}); polled at the next tick")


def _set_enabled(state: _State, url: str, enabled: bool) -> str:
    """Pause or resume the source `url` names (see `_config_url`); its config URL."""
    from aggregator.sources import set_enabled

    config_url = _config_url(state, url)
    listed = find_source(state.config(), config_url)
    try:
        source = set_enabled(state.path, config_url, enabled)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    if listed is not None and listed.enabled == enabled:
        click.echo(f"{source.url} is {'not paused' if enabled else 'already paused'}")
    else:
        click.echo(f"{'resumed' if enabled else 'paused'} {source.url} in {state.path}")
    return source.url


def _config_url(state: _State, url: str) -> str:
    """The config URL of the source named by `url`: a URL as is, or the ID that
    `aggregator feeds` shows, or the URL a listed feed moved to (a permanent redirect
    the worker followed: `feeds` shows that one)."""
    if not url.isdigit():
        config = state.config()
        if find_source(config, url) is not None:
            return url
        key = normalise_url(url)
        moved = [f for f in state.store(config).get_feeds() if normalise_url(f.url) == key]
        return moved[0].config_url if len(moved) == 1 and moved[0].in_config else url
    feed: FeedState | None = state.store(state.config()).get_feed(int(url))
    if feed is None:
        raise click.ClickException(f"no feed {url} (see `aggregator feeds`)")
    return feed.config_url


@cli.command("import")
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def import_(state: _State, opml_file: Path) -> None:
    """Add the subscriptions of an OPML file to the config file."""
    from aggregator.sources import import_opml

    try:
        added, skipped = import_opml(state.path, opml_file.read_bytes(), str(opml_file))
    except AggregatorError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"imported {counted(len(added), 'source')}, skipped {len(skipped)} already present")


@cli.command()
@pass_state
def export(state: _State) -> None:
    """Print the sources as OPML 2.0."""
    from aggregator.sources import export_opml

    click.echo(export_opml(state.config()), nl=False)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = int((when - now).total_seconds())
    span = abs(seconds)
    if span < 120:
        text = f"{span}s"
    elif span < 7200:
        text = f"{span // 60}m"
    elif span < 172800:
        text = f"{span // 3600}h"
    else:  # a feed backed off for days, one that last worked weeks ago
        text = f"{span // 86400}d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _feed_status(feed: FeedState) -> str:
    if feed.disabled_reason:
        return "disabled"
    if not feed.in_config:
        return "removed"
    if not feed.enabled:
        return "off"
    status = feed.last_status or "new"
    return f"{status} (ids:link)" if feed.id_rule else status


def _per_day(rate: float) -> str:
    return f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


@cli.command()
@click.option("--failing", is_flag=True, help="Only the sources that are failing or disabled.")
@pass_state
def feeds(state: _State, failing: bool) -> None:
    """List the sources with status, entries (stored; published per day over the last week),
    errors in a row, last fetch, last success and next check; the last error below."""
    config = state.config()
    store = state.store(config)
    now = datetime.now(UTC)
    # the sources as the config lists them now (added, removed, paused), as a worker
    # would see them at its next tick
    store.sync_sources(config.sources, now)
    columns = (
        f"{'ID':>4} {'STATUS':<14} {'ENTRIES':>7} {'PER DAY':>7} {'ERRORS':>6} "
        f"{'LAST FETCH':<11} {'LAST OK':<11} {'NEXT':<10}"
    )
    click.echo(f"{columns} SOURCE")
    for feed in store.get_feeds(now):
        if failing and not feed.failing:
            continue
        next_check = _ago(feed.next_check_at, now) if feed.polled else "-"
        row = (
            f"{feed.id:>4} {_feed_status(feed):<14} {feed.entry_count:>7} "
            f"{_per_day(feed.entries_per_day):>7} {feed.error_count:>6} "
            f"{_ago(feed.last_fetch_at, now):<11} {_ago(feed.last_success_at, now):<11} "
            f"{next_check:<10} "
        )
        click.echo(row + _fit(feed.display_title, len(row)))
        if feed.display_title != feed.url:
            click.echo(f"{'':>4} {'':<14} url: {feed.url}")
        if feed.last_error:
            label = "note" if feed.last_error_is_note else "last error"
            click.echo(f"{'':>4} {'':<14} {label}: {feed.last_error}")
        if feed.advice:
            click.echo(f"{'':>4} {'':<14} to do: {feed.advice}")


@cli.command()
@pass_state
def regroup(state: _State) -> None:
    """Forget all stories and group every stored entry again (after changing the rules)."""
    from aggregator.grouper import Grouper

    config = state.config()
    store = state.store(config)
    total = store.count_entries()
    grouper = Grouper.from_settings(store, f"regroup:{uuid.uuid4().hex[:8]}", config.settings)
    with click.progressbar(length=total, label="regrouping", file=sys.stderr) as bar:
        grouped = grouper.regroup(progress=bar.update)
    entries = counted(grouped, "entry", "entries")
    click.echo(f"regrouped {entries} into {counted(store.counts()['stories'], 'story', 'stories')}")


@cli.command()
@click.option(
    "--explain",
    "explain_id",
    type=int,
    metavar="ID",
    help="Show why a story's entries were grouped.",
)
@click.option("--limit", default=20, show_default=True, help="How many stories to list.")
@pass_state
def stories(state: _State, explain_id: int | None, limit: int) -> None:
    """List the top stories (two or more sources), or explain one."""
    config = state.config()
    store = state.store(config)
    if explain_id is not None:
        _explain(store, explain_id, timedelta(seconds=config.settings.group_window))
        return
    found = store.get_stories(limit=limit)
    if not found:
        click.echo("no story has two sources yet")
        return
    click.echo(f"{'ID':>7} {'SOURCES':>7} {'ENTRIES':>7} {'UPDATED (UTC)':<16} HEADLINE")
    for story in found:
        updated = story.last_updated_at.strftime("%Y-%m-%d %H:%M")
        line = f"{story.id:>7} {story.source_count:>7} {story.entry_count:>7} {updated:<16} "
        click.echo(line + _fit(story.headline, len(line)))


def _fit(text: str, used: int) -> str:
    """`text` cut to what is left of the terminal's width after `used` columns (at
    least 30 characters: a narrow terminal wraps rather than loses the text); whole when
    the output goes to a pipe or a file (`feeds | grep` finds the full name), unless
    COLUMNS sets a width."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return text
    width = shutil.get_terminal_size().columns
    return truncate_words(text, max(30, width - used))


def _explain(store: Any, story_id: int, window: timedelta) -> None:
    from aggregator.models import backlog_reason

    story = store.get_story(story_id)
    if story is None:
        raise click.ClickException(f"no story {story_id}")
    click.echo(f"story {story.id}: {story.headline}")
    click.echo(f"key terms: {', '.join(story.terms)}")
    click.echo(
        f"{counted(story.source_count, 'source')}, {counted(story.entry_count, 'entry', 'entries')}"
    )
    for entry in store.get_story_entries(story_id):
        reason = backlog_reason(entry, window) if entry.id == story.id else None
        if reason is not None:
            why = f"not grouped: {reason} (old news)"
        elif entry.id == story.id:
            why = "founded the story"
        else:
            score = f"{entry.group_score:.2f}" if entry.group_score is not None else "-"
            why = f"score {score}, shared: {', '.join(entry.group_terms) or '-'}"
        if entry.duplicate_of is not None:
            why += f"; same article as entry {entry.duplicate_of}"
        click.echo(f"  [{entry.feed_title}] {entry.heading}\n      {why}")


def _days(age: timedelta) -> str:
    return counted(age.days, "day")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="aggregator")
    except AggregatorError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
