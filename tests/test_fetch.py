"""aggregator.fetch against a real HTTP server on 127.0.0.1 (no HTTP mocks).

Cases from RELIABILITY.md: R1-R5, R8-R10 (fetch side), S1-S3. Loopback only: the test
policy allows 127.0.0.1 and refuses 127.0.0.2 and everything else; a second server on
127.0.0.2 proves that refused addresses never receive a connection.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from aggregator.fetch import Fetcher, fetch_all, fetch_all_sync, run_loop
from aggregator.models import FetchOptions, FetchRequest, FetchResult
from aggregator.schedule import next_check_at
from tests.feedserver import FeedServer, RecordedRequest, Response

OPTIONS = FetchOptions(user_agent="aggregator-test/1.0", allowed_networks=("127.0.0.1/32",))
FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
MiB = 1024 * 1024


class StubResolver(AbstractResolver):
    """Maps names to a sequence of (ip, port) answers, one per lookup; records lookups."""

    def __init__(self, answers: dict[str, list[tuple[str, int]]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        turn = self.calls.count(host)
        self.calls.append(host)
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        seq = self.answers[host]
        ip, real_port = seq[min(turn, len(seq) - 1)]
        return [
            {
                "hostname": host,
                "host": ip,
                "port": real_port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


def fetch(
    req: FetchRequest | str,
    options: FetchOptions = OPTIONS,
    resolver: AbstractResolver | None = None,
) -> FetchResult:
    if isinstance(req, str):
        req = FetchRequest(1, req)
    return fetch_all_sync([req], options, resolver)[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FeedServer]:
    (tmp_path / "feed.xml").write_bytes(FEED)
    with FeedServer(root=tmp_path) as srv:
        yield srv


@pytest.fixture
def other_server() -> Iterator[FeedServer]:
    """A server on 127.0.0.2 (refused by the test policy): must never see a request."""
    with FeedServer(host="127.0.0.2") as srv:
        srv.route("/", body=FEED)
        yield srv


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- basics --------------------------------------------------------------------------------


def test_plain_get_sends_identifying_headers(server: FeedServer) -> None:
    result = fetch(server.url("/feed.xml"))
    assert result.ok and result.body == FEED and result.status == 200
    assert result.content_type == "application/xml"
    assert result.final_url == server.url("/feed.xml") and result.permanent_url is None
    headers = server.requests[0].headers
    assert headers["User-Agent"] == "aggregator-test/1.0"
    assert "application/rss+xml" in headers["Accept"]
    assert "gzip" in headers["Accept-Encoding"]
    assert "if-none-match" not in headers and "if-modified-since" not in headers


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw"])
def test_compressed_bodies_are_decoded(server: FeedServer, encoding: str) -> None:
    if encoding == "gzip":
        body = gzip.compress(FEED)
    elif encoding == "deflate":
        body = zlib.compress(FEED)
    else:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = comp.compress(FEED) + comp.flush()
    server.route("/z", body=body, headers={"Content-Encoding": encoding.split("-")[0]})
    result = fetch(server.url("/z"))
    assert result.ok and result.body == FEED


def test_unsupported_encoding_is_an_error(server: FeedServer) -> None:
    server.route("/z", body=b"xx", headers={"Content-Encoding": "zstd"})
    result = fetch(server.url("/z"))
    assert result.error == "fetch: unsupported content encoding 'zstd'"


def test_connection_refused_is_an_error_not_an_exception() -> None:
    result = fetch(f"http://127.0.0.1:{closed_port()}/feed")
    assert result.status == 0 and result.error == "fetch: connection refused"


def test_truncated_body_is_an_error(server: FeedServer) -> None:
    server.route_truncated("/t", FEED)
    result = fetch(server.url("/t"))
    assert result.error is not None and result.error.startswith("fetch: ")
    assert result.body is None


def test_http_error_status(server: FeedServer) -> None:
    server.route("/boom", status=500, body=b"oops")
    result = fetch(server.url("/boom"))
    assert (result.status, result.error, result.body) == (500, "fetch: HTTP 500", None)


# -- R1 conditional GET ---------------------------------------------------------------------


def test_r1_second_fetch_sends_exactly_the_stored_validators(server: FeedServer) -> None:
    first = fetch(server.url("/feed.xml"))
    assert first.etag and first.last_modified
    second = fetch(FetchRequest(1, server.url("/feed.xml"), first.etag, first.last_modified))
    sent = server.requests[1].headers
    assert sent["If-None-Match"] == first.etag
    assert sent["If-Modified-Since"] == first.last_modified
    assert second.not_modified and second.status == 304 and second.body is None
    assert second.etag == first.etag


def test_r1_validators_are_sent_and_taken_verbatim(server: FeedServer) -> None:
    odd_etag, odd_date = 'W/"v 1;2"', "sometime last   tuesday"
    server.route("/v", handler=[Response(304, {"ETag": '"new"', "Last-Modified": "later"})])
    result = fetch(FetchRequest(1, server.url("/v"), etag=odd_etag, last_modified=odd_date))
    sent = server.requests[0].headers
    assert (sent["If-None-Match"], sent["If-Modified-Since"]) == (odd_etag, odd_date)
    assert result.not_modified
    assert (result.etag, result.last_modified) == ('"new"', "later")  # updated when new


# -- R2 Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_r2_retry_after_seconds(server: FeedServer, status: int) -> None:
    server.route("/busy", status=status, headers={"Retry-After": "3600"})
    before = datetime.now(UTC)
    result = fetch(server.url("/busy"))
    assert result.status == status and result.error == f"fetch: HTTP {status}"
    assert result.retry_after is not None
    assert before + timedelta(seconds=3600) <= result.retry_after
    assert result.retry_after <= datetime.now(UTC) + timedelta(seconds=3600)
    nxt = next_check_at(
        before,
        outcome="error",
        interval=600,
        min_interval=60,
        max_interval=86400,
        error_count=1,
        retry_after=result.retry_after,
    )
    assert nxt is not None and nxt >= before + timedelta(seconds=3600)


def test_r2_retry_after_http_date_and_cap(server: FeedServer) -> None:
    when = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
    server.route("/date", status=503, headers={"Retry-After": format_datetime(when, True)})
    server.route("/far", status=429, headers={"Retry-After": str(10**9)})
    assert fetch(server.url("/date")).retry_after == when
    far = fetch(server.url("/far")).retry_after
    assert far is not None and far <= datetime.now(UTC) + timedelta(days=30)
    assert far >= datetime.now(UTC) + timedelta(days=29)


def test_r2_retry_after_ignored_on_other_statuses(server: FeedServer) -> None:
    server.route("/x", status=500, headers={"Retry-After": "3600"})
    assert fetch(server.url("/x")).retry_after is None


# -- R3 cache hints --------------------------------------------------------------------------


def test_r3_max_age_hint_is_honoured_and_clamped(server: FeedServer) -> None:
    server.route("/c", body=FEED, headers={"Cache-Control": "public, max-age=7200"})
    result = fetch(server.url("/c"))
    assert result.cache_seconds == 7200
    now = datetime.now(UTC)
    kw = {"outcome": "ok", "interval": 1800, "min_interval": 300}
    roomy = next_check_at(now, max_interval=86400, cache_seconds=result.cache_seconds, **kw)  # type: ignore[arg-type]
    assert roomy is not None and roomy >= now + timedelta(seconds=7200 * 0.9)
    tight = next_check_at(now, max_interval=3600, cache_seconds=result.cache_seconds, **kw)  # type: ignore[arg-type]
    assert tight is not None and tight <= now + timedelta(seconds=3600 * 1.1)


def test_r3_s_maxage_and_expires(server: FeedServer) -> None:
    date = datetime(2026, 1, 1, tzinfo=UTC)
    server.route("/s", body=FEED, headers={"Cache-Control": "s-maxage=600"})
    server.route(
        "/e",
        body=FEED,
        headers={
            "Date": format_datetime(date, True),
            "Expires": format_datetime(date + timedelta(seconds=900), True),
        },
    )
    assert fetch(server.url("/s")).cache_seconds == 600
    assert fetch(server.url("/e")).cache_seconds == 900


# -- R4 redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "permanent"),
    [([301], True), ([308], True), ([301, 308], True), ([302], False), ([301, 302], False)],
)
def test_r4_permanent_url_only_for_all_permanent_chains(
    server: FeedServer, statuses: list[int], permanent: bool
) -> None:
    server.route_redirect_chain("/old", statuses, "/feed.xml")
    result = fetch(server.url("/old"))
    assert result.ok and result.body == FEED
    assert result.final_url == server.url("/feed.xml")
    assert result.permanent_url == (server.url("/feed.xml") if permanent else None)
    assert len(server.requests) == len(statuses) + 1


def test_r4_relative_location(server: FeedServer) -> None:
    server.route_redirect("/rel", "feed.xml", 301)
    result = fetch(server.url("/rel"))
    assert result.ok and result.permanent_url == server.url("/feed.xml")


def test_r4_redirect_to_other_scheme_is_refused(server: FeedServer) -> None:
    server.route_redirect("/f", "file:///etc/passwd", 301)
    result = fetch(server.url("/f"))
    assert result.error is not None and "scheme 'file'" in result.error
    assert result.permanent_url is None and len(server.requests) == 1


# -- R5 gone ---------------------------------------------------------------------------------


def test_r5_gone(server: FeedServer) -> None:
    server.route("/gone", status=410)
    result = fetch(server.url("/gone"))
    assert result.status == 410 and result.error == "fetch: HTTP 410"
    nxt = next_check_at(
        datetime.now(UTC),
        outcome="gone",
        interval=600,
        min_interval=60,
        max_interval=86400,
        error_count=1,
    )
    assert nxt is None


# -- R8 deadlines ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["slow_headers", "slowloris"])
def test_r8_slow_servers_are_cut_at_the_deadline(server: FeedServer, fault: str) -> None:
    if fault == "slow_headers":
        server.route_slow_headers("/slow", delay=20)
    else:
        server.route_slowloris("/slow", interval=0.1)
    options = FetchOptions(user_agent="t", timeout=1.0, allowed_networks=("127.0.0.1/32",))
    start = time.monotonic()
    result = fetch(server.url("/slow"), options)
    elapsed = time.monotonic() - start
    assert result.error == "fetch: timed out after 1s"
    assert 0.9 <= elapsed < 2.0


# -- R9 size caps on decompressed bytes -------------------------------------------------------


def _peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


@pytest.mark.parametrize("fault", ["gzip_bomb", "huge_body", "huge_body_no_length"])
def test_r9_body_cap_on_decompressed_bytes(server: FeedServer, fault: str) -> None:
    if fault == "gzip_bomb":
        server.route_gzip_bomb("/big", size=1 << 30)
    else:
        server.route_huge_body("/big", size=64 * MiB, length=fault == "huge_body")
    fetch(server.url("/feed.xml"))  # warm up imports and the event loop machinery
    _reset_peak_rss()
    before = _peak_rss_kib()
    start = time.monotonic()
    result = fetch(server.url("/big"))
    elapsed = time.monotonic() - start
    growth_mb = (_peak_rss_kib() - before) / 1024
    assert result.error == f"fetch: body larger than {10 * MiB} bytes"
    assert result.status == 200 and result.body is None
    assert growth_mb < 100, f"peak RSS grew by {growth_mb:.0f} MB"
    assert elapsed < 5


def test_r9_cap_is_configurable(server: FeedServer) -> None:
    server.route("/b", body=b"x" * 2000)
    options = FetchOptions(user_agent="t", max_body_bytes=1000, allowed_networks=("127.0.0.1/32",))
    assert fetch(server.url("/b"), options).error == "fetch: body larger than 1000 bytes"
    server.route("/ok", body=b"x" * 1000)
    assert fetch(server.url("/ok"), options).ok


# -- R10 redirect limits ---------------------------------------------------------------------


def test_r10_redirect_loop_stops_after_five_hops(server: FeedServer) -> None:
    server.route_redirect_loop("/loop")
    result = fetch(server.url("/loop"))
    assert result.error == "fetch: too many redirects (>5)"
    assert len(server.requests) == 6  # the request and 5 followed redirects


def test_r10_more_than_five_redirects(server: FeedServer) -> None:
    server.route_redirect_chain("/six", [301] * 6, "/feed.xml")
    server.route_redirect_chain("/five", [301] * 5, "/feed.xml")
    result = fetch(server.url("/six"))
    assert result.error == "fetch: too many redirects (>5)" and result.permanent_url is None
    assert len(server.requests) == 6 and not server.requests_to("/feed.xml")
    server.reset()
    assert fetch(server.url("/five")).ok and len(server.requests) == 6


# -- S1 address policy before any connection ----------------------------------------------


def test_s1_refused_before_any_connect(server: FeedServer) -> None:
    port = server.port
    urls = [
        f"http://127.0.0.1:{port}/feed.xml",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://127\u30020\u30020\u30021:{port}/",  # NFKC makes it 127.0.0.1
        f"http://\u2460\u2461\u2466.0.0.1:{port}/",  # circled digits, the same
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
    ]
    spy = StubResolver()
    strict = FetchOptions(user_agent="t")  # no allowed networks at all
    results = fetch_all_sync([FetchRequest(i, u) for i, u in enumerate(urls)], strict, spy)
    for url, result in zip(urls, results, strict=True):
        assert result.status == 0 and result.error is not None, url
        assert result.error.startswith(("fetch: refused address", "fetch: unsupported URL")), url
    assert spy.calls == []
    assert server.requests == []


def test_s1_names_resolving_to_refused_addresses(other_server: FeedServer) -> None:
    spy = StubResolver({"intranet.test": [("127.0.0.2", other_server.port)]})
    result = fetch(f"http://intranet.test:{other_server.port}/", resolver=spy)
    assert result.error == "fetch: refused address 127.0.0.2 (loopback) for host intranet.test"
    assert spy.calls == ["intranet.test"] and other_server.requests == []


def test_s1_per_source_override(server: FeedServer) -> None:
    strict = FetchOptions(user_agent="t")
    loose = FetchOptions(user_agent="t", allow_private_addresses=True)
    url = server.url("/feed.xml")
    assert fetch(FetchRequest(1, url, allow_private_addresses=True), strict).ok
    refused = fetch(FetchRequest(1, url, allow_private_addresses=False), loose)
    assert refused.error == "fetch: refused address 127.0.0.1 (loopback)"
    assert fetch(url, loose).ok
    assert len(server.requests) == 2


# -- S2 redirect to a refused address -------------------------------------------------------


def test_s2_redirect_to_private_is_refused_at_second_hop(
    server: FeedServer, other_server: FeedServer
) -> None:
    server.route_redirect("/pub", other_server.url("/"), 302)
    result = fetch(server.url("/pub"))
    assert result.error == "fetch: refused address 127.0.0.2 (loopback)"
    assert result.status == 302 and result.final_url == other_server.url("/")
    assert [r.path for r in server.requests] == ["/pub"]
    assert other_server.requests == []


# -- S3 DNS rebinding -------------------------------------------------------------------------


def test_s3_dns_rebinding_is_refused(server: FeedServer, other_server: FeedServer) -> None:
    server.route("/", body=FEED, headers={"Connection": "close"})
    stub = StubResolver(
        {"feeds.test": [("127.0.0.1", server.port), ("127.0.0.2", other_server.port)]}
    )

    async def twice() -> list[FetchResult]:
        async with Fetcher(OPTIONS, stub) as fetcher:
            url = f"http://feeds.test:{server.port}/"
            return [await fetcher.fetch(FetchRequest(1, url)) for _ in range(2)]

    first, second = asyncio.run(twice())
    assert first.ok and first.body == FEED
    assert second.error == "fetch: refused address 127.0.0.2 (loopback) for host feeds.test"
    assert stub.calls == ["feeds.test", "feeds.test"]
    assert len(server.requests) == 1 and other_server.requests == []


# -- batches -----------------------------------------------------------------------------------


def test_fetch_all_keeps_order_and_isolates_failures(server: FeedServer) -> None:
    server.route("/bad", status=500)
    urls = [server.url("/feed.xml") if i != 7 else server.url("/bad") for i in range(20)]
    results = asyncio.run(fetch_all([FetchRequest(i, u) for i, u in enumerate(urls)], OPTIONS))
    assert [r.feed_id for r in results] == list(range(20))
    assert [r.ok for r in results] == [i != 7 for i in range(20)]


class InFlight:
    """Routes answering FEED after `delay` seconds, counting the requests answered at
    once across every server they are on."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.most = 0
        self._now = 0
        self._lock = threading.Lock()

    def route(self, server: FeedServer, path: str) -> str:
        server.route(path, handler=self._answer)
        return server.url(path)

    def _answer(self, _request: RecordedRequest) -> Response:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
        time.sleep(self.delay)
        with self._lock:
            self._now -= 1
        return Response(200, {"Content-Type": "application/xml"}, FEED)


@pytest.mark.parametrize("split", ["ports", "private-address settings"])
def test_no_more_than_max_per_host_requests_in_flight_to_one_host(
    server: FeedServer, split: str
) -> None:
    """Six slow feeds of one host, on two of its ports or with two private-address
    settings (each setting has its own connection pool): the host never answers more
    than `max_per_host` of them at once, though `max_connections` would allow all six."""
    slow = InFlight(delay=0.2)
    with FeedServer() as other_port:
        requests = []
        for n in range(6):
            on = other_port if split == "ports" and n % 2 else server
            private = True if split != "ports" and n % 2 else None
            url = slow.route(on, f"/slow{n}.xml")
            requests.append(FetchRequest(n, url, allow_private_addresses=private))
        options = replace(OPTIONS, max_connections=8, max_per_host=2)
        results = fetch_all_sync(requests, options)
    assert [r.body for r in results] == [FEED] * 6, [r.error for r in results]
    assert slow.most == 2


def test_polls_run_on_uvloop_where_it_is_installed() -> None:
    uvloop = pytest.importorskip("uvloop")  # a dependency except on Windows

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert run_loop(loop_type()) is uvloop.Loop


def test_polls_run_on_asyncio_where_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(loop_module()).startswith("asyncio")


def test_a_connection_error_that_says_nothing_is_still_named() -> None:
    """Some failures carry an OSError without a message (a server that closes the
    connection at once): the feed's error still says what happened."""
    from types import SimpleNamespace

    import aiohttp

    from aggregator.fetch import _describe_connect_error

    key = SimpleNamespace(host="127.0.0.1", port=8701, ssl=True)
    error = aiohttp.ClientConnectorError(key, ConnectionResetError())  # type: ignore[arg-type]
    assert _describe_connect_error(error) == (
        "fetch: cannot connect to 127.0.0.1:8701 (ConnectionResetError)"
    )
