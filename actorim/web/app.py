"""The node's WSGI application: ``/ws`` for WebSockets, plus plain HTTP on the same port.

``/healthz`` says the process is alive; ``/readyz`` says the node takes traffic (its store is
up, it is not draining and, in cluster mode, its Redis link is healthy). Both keep answering
while the node drains, when WebSocket upgrades get a 503. ``/metrics`` serves the node's
Prometheus metrics. ``/dev/token?user=NAME`` mints a token in development mode only;
``/page/config`` tells the chat page how people sign in here (``dev``, ``login_url``,
``token_url``). ``/`` is
the chat page and ``/static/<file>`` its files, from ``actorim/web/static/``. ``/api/v1`` is
the server API (``actorim.web.api``, docs/api.md). A WebSocket on
``/ws`` passes admission control first (``actorim.web.admission``: past ``max_setups``
connections setting up it is closed at once, 1013 with a hint), then is handed to
``run_connection``, which returns at once: the connection is read by a watcher on the hub from
then on, so the request's greenlet ends.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST

from actorim.domain.auth import valid_user_id
from actorim.domain.origins import OriginPolicy
from actorim.web.admission import refused, started
from actorim.web.api import PREFIX, ServerApi
from actorim.web.endpoint import run_connection
from actorim.web.limits import WireLimits

if TYPE_CHECKING:
    from actorim.config import Config
    from actorim.runtime.context import NodeContext
    from actorim.runtime.operations import Operations

__all__ = ["App"]

logger = logging.getLogger("actorim")

StartResponse = Callable[..., Any]


class Served(Protocol):
    """What the app needs of the node it serves (``actorim.node.Node``): named here, so that
    the web layer does not import the composition root that imports it."""

    config: Config
    ctx: NodeContext

    def readiness(self) -> tuple[bool, str]: ...

    def token(self, user: str) -> str: ...

    @property
    def operations(self) -> Operations: ...


class App:
    """WSGI application of one node; mount it in another WSGI server or run it with ``Node``."""

    def __init__(self, node: Served) -> None:
        self.node = node
        config = node.config
        self.origins = OriginPolicy.build(
            public_url=config.public_url, allowed=config.allowed_origins, dev=config.dev
        )
        if self.origins.refuses_every_browser:
            logger.info(
                "browser pages cannot open WebSockets: set ACTORIM_PUBLIC_URL (--public-url) "
                "to the URL the chat page is loaded from, or ACTORIM_ALLOWED_ORIGINS"
            )
        self.websocket_limits = WireLimits(
            max_message_size=config.max_frame_size,
            max_fragments=config.max_fragments,
            frame_rate=config.frame_rate,
            frame_burst=config.frame_burst,
            frames_per_read=config.frames_per_read,
            closing_read_limit=config.closing_read_limit,
            handshake_timeout=config.handshake_timeout,
            max_header_bytes=config.max_header_bytes,
            max_handshakes=config.max_handshakes,
        )
        self.api = ServerApi(config, node.operations)

    def websocket_accepting(self) -> bool:
        """Whether a WebSocket upgrade may start; refused (503) while the node drains, when
        plain HTTP (``/healthz``, ``/readyz``) is still answered."""
        return not self.node.ctx.draining

    def websocket_origin_allowed(self, origin: str | None, host: str) -> bool:
        """Non-browser clients send no Origin; browsers need an origin the node was told about
        (or, in development mode only, this host): see ``actorim.domain.origins``."""
        return self.origins.allows(origin, host=host)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        websocket = environ.get("actorim.websocket")
        if path == "/ws":
            if websocket is None:
                return _text(
                    start_response,
                    "426 Upgrade Required",
                    "use a WebSocket\n",
                    [("Upgrade", "websocket")],
                )
            remote = _remote(environ)
            # The connection may live for days: the request's environ (headers and all) is not
            # needed again, so it does not stay in memory that long.
            environ.clear()
            if not refused(self.node.ctx, websocket):
                run_connection(self.node.ctx, websocket, remote)
                started(self.node.ctx, websocket)
            return []
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            ready, why = self.node.readiness()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _json(start_response, status, {"ready": ready, "reason": why})
        if path == "/metrics":
            body = self.node.ctx.metrics.render()
            start_response(
                "200 OK",
                [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return self.api(environ, start_response)
        if path == "/dev/token":
            return self._dev_token(environ, start_response)
        if path == "/page/config":
            return self._page_config(start_response)
        if path == "/":
            return _static(environ, start_response, "index.html")
        if path.startswith("/static/"):
            return _static(environ, start_response, path[len("/static/") :])
        return _text(start_response, "404 Not Found", "not found\n")

    def _page_config(self, start_response: StartResponse) -> Iterable[bytes]:
        """How the chat page signs people in here: by name in development mode, otherwise by a
        token from the application (``login_url``, ``token_url``). Nothing secret."""
        config = self.node.config
        return _json(
            start_response,
            "200 OK",
            {
                "dev": config.dev,
                "login_url": config.login_url or None,
                "token_url": config.token_url or None,
            },
        )

    def _dev_token(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.node.config.dev:
            return _text(start_response, "404 Not Found", "not found\n")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        user = (query.get("user") or [""])[0]
        if not valid_user_id(user):
            return _json(
                start_response,
                "400 Bad Request",
                {"error": "user must be 1-128 characters of A-Z a-z 0-9 _ . : @ -"},
            )
        return _json(start_response, "200 OK", {"user": user, "token": self.node.token(user)})


def _remote(environ: dict[str, Any]) -> str:
    return f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}"


def _text(
    start_response: StartResponse,
    status: str,
    body: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = body.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ],
    )
    return [data]


def _json(start_response: StartResponse, status: str, obj: Any) -> list[bytes]:
    data = json.dumps(obj).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


STATIC_DIR = Path(__file__).with_name("static")
"""The chat page's files: a flat directory, served as they are (no build step)."""

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
"""Content types of the files served from ``STATIC_DIR``; other names are not served."""

STATIC_CACHE_CONTROL = "no-cache"
"""File names carry no version, so browsers revalidate each time (a 304 thanks to the ETag)."""

# The page loads only its own files and talks only to this origin (the WebSocket included).
PAGE_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# One path segment that cannot be "." or "..": no directory traversal, no hidden files.
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def _static(environ: dict[str, Any], start_response: StartResponse, name: str) -> list[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return _text(
            start_response, "405 Method Not Allowed", "use GET\n", [("Allow", "GET, HEAD")]
        )
    content_type = STATIC_TYPES.get(Path(name).suffix)
    path = STATIC_DIR / name
    if content_type is None or _STATIC_NAME.fullmatch(name) is None or not path.is_file():
        return _text(start_response, "404 Not Found", "not found\n")
    stat = path.stat()
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    headers = [
        ("Content-Type", content_type),
        ("Cache-Control", STATIC_CACHE_CONTROL),
        ("ETag", etag),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if content_type.startswith("text/html"):
        headers += [("Content-Security-Policy", PAGE_CSP), ("Referrer-Policy", "no-referrer")]
    if etag in environ.get("HTTP_IF_NONE_MATCH", ""):
        start_response("304 Not Modified", headers)
        return []
    data = path.read_bytes()
    start_response("200 OK", [*headers, ("Content-Length", str(len(data)))])
    return [] if method == "HEAD" else [data]
