"""Headless Debian chromium (Playwright, never a downloaded browser) against the app on a
real port, over entries polled from tests/data through the real pipeline plus stories:
`/`, a story page and `/sources` load with no console error and no CSP violation,
stories and sources are visible, links and pagination work. Screenshots of each page
(desktop, phone, dark) go to $AGGREGATOR_SCREENSHOTS or a temporary folder, printed.

Skips when chromium or Playwright is missing, unless AGGREGATOR_REQUIRE_CLIENTS=1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from aggregator.config import load_config
from aggregator.models import StoryAssignment, StoryLabel
from aggregator.scheduler import poll_options
from aggregator.store import Store
from aggregator.update import poll_due
from aggregator.web import create_app
from tests.conftest import write_config
from tests.feedserver import FeedServer
from tests.test_web import fill_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("AGGREGATOR_REQUIRE_CLIENTS") == "1":
        pytest.fail(f"browser test required (AGGREGATOR_REQUIRE_CLIENTS=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, int]]:
    """tests/data feeds polled through the real pipeline, plus the web tests' sources and
    stories, served by werkzeug on a free port."""
    folder = tmp_path_factory.mktemp("browser")
    data = Path(__file__).parent / "data"
    with FeedServer(root=data) as feeds:
        url = f"sqlite:///{folder}/aggregator.db"
        config = write_config(
            folder / "aggregator.toml", url, [feeds.url("/world.atom"), feeds.url("/world.rss")]
        )
        loaded = load_config(config)
        store = Store(url)
        store.upgrade()
        store.sync_sources(loaded.sources, datetime.now(UTC))
        # In a thread: Playwright's sync API may already run an event loop in this one.
        poller = threading.Thread(
            target=poll_due,
            args=(store, poll_options(loaded), "browser-test"),
            kwargs={"force": True},
        )
        poller.start()
        poller.join(60)
    filled = fill_store(store, per_feed=30)  # enough entries for several pages
    polled = [e for e in store.get_ungrouped(100) if e.feed_id not in filled.feed_ids][:2]
    if len(polled) == 2:
        story = polled[0].id
        store.save_assignments(
            [StoryAssignment(e.id, story, 0.5, ("world",)) for e in polled],
            [StoryLabel(story, polled[0].title, story, ("world",))],
        )
    app = create_app({"DATABASE_URL": url, "SITE_TITLE": "Browser test"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = base + "/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, store, filled.big_story
    server.shutdown()
    thread.join(5)
    app.extensions["store"].close()
    store.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(
        os.environ.get("AGGREGATOR_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots")
    )
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


class Watched:
    """A page that records console errors, page errors and CSP violations."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        self.page.on("requestfailed", self._request_failed)
        # A listener installed before any page script: CSP violations land in the console.
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error("
            "'csp-violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
        )

    def _request_failed(self, request: Any) -> None:
        # A request the browser itself cancels because the page navigated away (the
        # favicon when a link is clicked at once) is not a broken resource.
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed: {request.url} ({request.failure})")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def visit(self, url: str) -> Any:
        response = self.page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, url
        return response

    def close(self) -> None:
        self.context.close()


def test_digest_story_and_sources_pages(
    browser: Any, site: tuple[str, Store, int], shots: Path
) -> None:
    base, store, story_id = site
    watched = Watched(browser, viewport={"width": 1280, "height": 900})
    page = watched.page
    try:
        response = watched.visit(base + "/")
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert page.locator("#top-stories").is_visible()
        assert page.locator("article.story").count() >= 2
        assert page.get_by_text("Earthquake shakes the capital").first.is_visible()
        assert page.locator("section.latest li.entry").count() >= 10
        page.screenshot(path=str(shots / "digest.png"), full_page=True)

        page.locator("section.latest a[rel=next]").click()  # pagination
        page.wait_for_load_state("load")
        assert "before=" in page.url and page.locator("section.latest li.entry").count() > 0
        page.locator("section.latest a[rel=prev]").click()
        page.wait_for_load_state("load")
        assert "after=" in page.url

        watched.visit(base + "/")
        page.locator("article.story", has_text="Earthquake").get_by_role(
            "link", name="full coverage"
        ).first.click()
        page.wait_for_load_state("load")
        assert page.url == f"{base}/stories/{story_id}"
        assert page.locator("h1").inner_text() == "Earthquake shakes the capital"
        assert page.locator(".timeline svg rect").count() >= 1
        assert page.locator(".timeline svg").bounding_box()["width"] > 0
        assert page.locator("ol.coverage li").count() == 3
        page.screenshot(path=str(shots / "story.png"), full_page=True)

        page.get_by_role("link", name="Sources", exact=True).click()
        page.wait_for_load_state("load")
        assert page.url == f"{base}/sources"
        rows = page.locator("table.sources tbody tr")
        assert rows.count() == len(store.get_feeds())
        assert page.get_by_role("link", name="Alpha Times").is_visible()
        assert page.locator("svg.spark polyline").first.is_visible()
        page.screenshot(path=str(shots / "sources.png"), full_page=True)

        page.get_by_role("link", name="Alpha Times").click()
        page.wait_for_load_state("load")
        assert page.locator("h1").inner_text() == "Alpha Times"
    finally:
        watched.close()
    assert watched.problems == []


def test_phone_and_dark_mode(browser: Any, site: tuple[str, Store, int], shots: Path) -> None:
    base, _store, story_id = site
    watched = Watched(
        browser, viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True
    )
    page = watched.page
    try:
        for name, path in (
            ("digest", "/"),
            ("story", f"/stories/{story_id}"),
            ("sources", "/sources"),
        ):
            watched.visit(base + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(21, 22, 23)", background  # the dark palette
            page.screenshot(path=str(shots / f"{name}-phone-dark.png"), full_page=True)
    finally:
        watched.close()
    assert watched.problems == []
