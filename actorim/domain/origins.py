"""Which browser pages may open a WebSocket to the node: the ``Origin`` check, as pure logic.

A browser sends the page's origin with every WebSocket handshake; other clients send none and
are not asked. Comparing the origin with the request's ``Host`` is not enough outside
development mode: with DNS rebinding an attacker's page reaches the node under the attacker's
own name, so its ``Origin`` and ``Host`` agree. Outside development mode the node therefore
accepts only the origins it was told about: ``public_url`` (where its own chat page is served)
and ``allowed_origins``. Development mode also accepts a page served by the host it asked.

>>> url = "https://Chat.Example.com:443/app"
>>> policy = OriginPolicy.build(public_url=url, allowed=(), dev=False)
>>> policy.allows("https://chat.example.com", host="chat.example.com")
True
>>> policy.allows("http://rebound.example:8080", host="rebound.example:8080")
False
>>> policy.allows(None, host="anything")
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["WILDCARD", "OriginPolicy", "origin_of"]

WILDCARD = "*"
"""An ``allowed_origins`` entry that accepts every origin."""

# RFC 6454 §6.2: an origin is serialised without the port when it is the scheme's default.
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """The origin (``scheme://host[:port]``, lower case) of an http(s) URL, as browsers send it.

    Raises ``ValueError`` naming the problem for anything else.

    >>> origin_of("HTTPS://Chat.Example.com:443/path?q=1")
    'https://chat.example.com'
    >>> origin_of("http://[::1]:8080")
    'http://[::1]:8080'
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"must name a host, got {url!r}")
    port = parts.port  # raises ValueError for a port that is not a number in range
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """The origins a node accepts; ``allows`` answers one handshake."""

    origins: frozenset[str]
    any_origin: bool
    same_host: bool

    @classmethod
    def build(cls, *, public_url: str, allowed: Iterable[str], dev: bool) -> OriginPolicy:
        """The policy of a node's settings: ``public_url``, ``allowed_origins`` and ``dev``."""
        entries = [entry.strip() for entry in allowed]
        origins = {entry.lower().rstrip("/") for entry in entries if entry != WILDCARD}
        if public_url:
            origins.add(origin_of(public_url))
        return cls(frozenset(origins), WILDCARD in entries, same_host=dev)

    @property
    def refuses_every_browser(self) -> bool:
        """Whether no browser page at all can connect (worth saying at start-up)."""
        return not (self.origins or self.any_origin or self.same_host)

    def allows(self, origin: str | None, *, host: str) -> bool:
        """Whether a handshake with this ``Origin`` (None: not a browser) to ``host`` may go on."""
        if origin is None:
            return True
        if self.any_origin or origin.lower() in self.origins:
            return True
        return self.same_host and urlsplit(origin).netloc.lower() == host.lower()
