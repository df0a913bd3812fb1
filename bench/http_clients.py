"""Conditional GETs per second on loopback: aiohttp (via aggregator.fetch) vs requests/httpx.

Owns nothing of the application; it backs the choice of aiohttp for `aggregator.fetch`.
Each client sends N conditional GETs (If-None-Match) to a FeedServer (in a child
process) answering 304.
httpx is measured only when installed. Run: python bench/http_clients.py [N]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.fetch import Fetcher  # noqa: E402
from aggregator.models import FetchOptions, FetchRequest  # noqa: E402

ETAG = '"v1"'


def bench_aiohttp(url: str, n: int) -> float:
    options = FetchOptions(
        user_agent="bench",
        allowed_networks=("127.0.0.1/32",),
        max_connections=32,
        max_per_host=32,
    )

    async def run() -> float:
        async with Fetcher(options) as fetcher:
            start = time.perf_counter()
            results = await asyncio.gather(
                *(fetcher.fetch(FetchRequest(i, url, etag=ETAG)) for i in range(n))
            )
            elapsed = time.perf_counter() - start
        assert all(r.status == 304 for r in results), results[0]
        return n / elapsed

    return asyncio.run(run())


def bench_requests(url: str, n: int, threads: int = 32) -> float:
    import requests

    local = __import__("threading").local()

    def one(_: int) -> int:
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        return session.get(url, headers={"If-None-Match": ETAG}, timeout=10).status_code

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        codes = list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - start
    assert all(c == 304 for c in codes)
    return n / elapsed


def bench_httpx(url: str, n: int) -> float | None:
    try:
        import httpx
    except ImportError:
        return None

    async def run() -> float:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(limits=limits) as client:
            start = time.perf_counter()
            rs = await asyncio.gather(
                *(client.get(url, headers={"If-None-Match": ETAG}) for _ in range(n))
            )
            elapsed = time.perf_counter() - start
        assert all(r.status_code == 304 for r in rs)
        return n / elapsed

    return asyncio.run(run())


SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.feedserver import FeedServer
with FeedServer() as server:
    server.route("/feed", status=304, headers={{"ETag": {etag!r}}})
    print(server.port, flush=True)
    sys.stdin.read()
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    root = str(Path(__file__).resolve().parent.parent)
    code = SERVER.format(root=root, etag=ETAG)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        url = f"http://127.0.0.1:{proc.stdout.readline().strip()}/feed"
        clients = (("aiohttp", bench_aiohttp), ("requests", bench_requests), ("httpx", bench_httpx))
        for name, fn in clients:
            rate = fn(url, n)
            shown = "not installed" if rate is None else f"{rate:,.0f} conditional GETs/s"
            print(f"{name:9} {shown}")
        proc.stdin.close()
    print(
        "note: the server (Python ThreadingHTTPServer, own process) limits all clients; "
        "compare the numbers with each other, not with a real web server."
    )


if __name__ == "__main__":
    main()
