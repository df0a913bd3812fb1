"""The web app: a stateless, read-only Flask app over the store. It renders pages and
merged feeds; it never fetches a feed and never starts a scheduler.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask

from aggregator.config import Settings, load_config, resolve_config_path
from aggregator.render import safe_url
from aggregator.store import Store
from aggregator.web.cache import FastPath, ResponseCache
from aggregator.web.common import app_version

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Settings come from the config file (see `aggregator.config`);
    `test_config` may override `DATABASE_URL`, `SITE_TITLE`, `BASE_URL`, `CONFIG_PATH`,
    `GROUP_WINDOW`, and the render cache's `VERSION_TTL` and `STALE_SECONDS` (see
    `web/cache.py`).
    """
    app = Flask(__name__)
    overrides = dict(test_config or {})
    if "DATABASE_URL" not in overrides or "CONFIG_PATH" in overrides:
        path = resolve_config_path(overrides.get("CONFIG_PATH"))
        settings = load_config(path).settings
        app.config.update(
            CONFIG_PATH=str(path),  # checked again by /healthz and /sources (`config_problem`)
            DATABASE_URL=settings.database_url,
            SITE_TITLE=settings.site_title,
            BASE_URL=settings.base_url,
            GROUP_WINDOW=timedelta(seconds=settings.group_window),
        )
    defaults = Settings()
    app.config.setdefault("SITE_TITLE", defaults.site_title)
    # tells old news apart on story pages (`views._old_news`)
    app.config.setdefault("GROUP_WINDOW", timedelta(seconds=defaults.group_window))
    app.config.setdefault("BASE_URL", defaults.base_url)
    app.config.update(overrides)
    app.extensions["store"] = Store(app.config["DATABASE_URL"])
    stale = app.config.get("STALE_SECONDS", 2 * float(app.config.get("VERSION_TTL", 1.0)))
    cache = app.extensions["response_cache"] = ResponseCache(stale_seconds=float(stale))
    app.jinja_env.filters["safe_url"] = safe_url

    from aggregator.web import feeds, views

    app.register_blueprint(views.bp)
    app.register_blueprint(feeds.bp)
    app.after_request(_security_headers)
    headers = list(SECURITY_HEADERS.items())
    fast_path = FastPath(app.wsgi_app, cache, lambda: app_version(app), headers)
    app.extensions["fast_path"] = fast_path
    app.wsgi_app = fast_path  # type: ignore[method-assign]
    return app


def _security_headers(response: Any) -> Any:
    """Every response: no MIME sniffing, no referrer, and the strict CSP (feeds and JSON
    included, so a browser opening one cannot run anything from it either).
    """
    response.headers.update(SECURITY_HEADERS)
    if response.mimetype == "text/html":
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
