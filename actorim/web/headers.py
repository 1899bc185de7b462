"""A fast reader of HTTP request headers for gevent's WSGI handler.

gevent's pywsgi parses request headers with ``http.client.parse_headers``, which runs the email
package's feed parser: about a sixth of the CPU a new WebSocket connection costs. Request headers
need none of email's generality, so this reads them line by line with the same limits as
``http.client`` (lines of at most 64 KiB, at most 100 headers) and offers pywsgi the small
interface it uses.

Those two limits alone let one request hold 100 x 64 KiB; ``max_bytes`` bounds the whole block
(``DEFAULT_MAX_HEADER_BYTES``), and a block over it sets ``status`` to ``TOO_LARGE``, which the
handler answers with 431 (RFC 6585 §5).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "TOO_LARGE",
    "RequestHeaders",
    "read_headers",
]

# The limits http.client applies (its _MAXLINE and _MAXHEADERS).
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
"""Bytes all header lines of one request may take together: Node.js's default
(``--max-http-header-size``); a WebSocket upgrade from a browser, cookies included, sends a
few hundred."""

TOO_LARGE = "Request header fields too large"
"""``RequestHeaders.status`` of a block over its byte limit (the reason phrase of 431)."""


# What pywsgi leaves out of the WSGI environ's HTTP_* keys: the two it sets under CGI names.
_NOT_HTTP = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


class RequestHeaders:
    """Request headers with the interface pywsgi's handler uses (``get``, ``getheader``,
    ``headers``, ``typeheader``, ``status``, ``del``); names compare case-insensitively."""

    __slots__ = ("_index", "_items", "status")

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []
        # Lower-cased name -> its first value, made by the first lookup: pywsgi and the
        # handshake look up about six names per request.
        self._index: dict[str, str] | None = None
        self.status = ""

    def get(self, name: str, default: str | None = None) -> str | None:
        index = self._index
        if index is None:
            index = self._index = {}
            for key, value in self._items:
                index.setdefault(key.lower(), value)
        return index.get(name.lower(), default)

    getheader = get

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        kept = [(k, v) for k, v in self._items if k.lower() != name]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept
        self._index = None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def environ_items(self) -> list[tuple[str, str]]:
        """The WSGI environ's ``HTTP_*`` entries, as pywsgi's handler derives them from
        ``headers`` (``WSGIHandler._headers``) without formatting each line to split it again:
        names with ``_`` are dropped (they would pass for their ``-`` twin), ``Content-Type``
        and ``Content-Length`` are left to their CGI keys. pywsgi joins repeated names."""
        entries = []
        for key, value in self._items:
            if "_" in key:
                continue
            name = key.replace("-", "_").upper()
            if name not in _NOT_HTTP:
                entries.append(("HTTP_" + name, value))
        return entries

    @property
    def headers(self) -> Iterator[str]:
        for key, value in self._items:
            yield f"{key}: {value}\r\n"

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")


def read_headers(
    rfile: IO[bytes], *_args: object, max_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> RequestHeaders:
    """Read header lines up to the blank line; a bad header block sets ``status``.

    The block, its blank line included, may take ``max_bytes``; reading stops one byte past:

    >>> import io
    >>> read_headers(io.BytesIO(b"A: 1\\r\\nB: 2\\r\\n\\r\\n"), max_bytes=16).items()
    [('A', '1'), ('B', '2')]
    >>> read_headers(io.BytesIO(b"A: 1\\r\\nB: 2\\r\\n\\r\\n"), max_bytes=8).status
    'Request header fields too large'
    """
    headers = RequestHeaders()
    items = headers._items
    left = max_bytes
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(min(MAX_HEADER_LINE, left) + 1)
        left -= len(line)
        if left < 0:
            headers.status = TOO_LARGE
            return headers
        if len(line) > MAX_HEADER_LINE:
            headers.status = "Line too long"
            return headers
        if line in (b"\r\n", b"\n", b""):
            return headers
        if line[:1] in (b" ", b"\t") and items:  # an obsolete folded continuation line
            key, value = items[-1]
            items[-1] = (key, value + " " + line.strip().decode("latin-1"))
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            headers.status = "Invalid header line"
            return headers
        items.append((name, value.strip()))
    headers.status = "Too many headers"
    return headers
