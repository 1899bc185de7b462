"""The webhook dispatcher's HTTP client (``ports.WebhookPost``): one POST on a connection of
its own, bounded in time as a whole, never following a redirect (a receiver that moved is a
failure the operator sees in the dead-letter queue, not a request sent somewhere else)."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from urllib.parse import urlsplit

import gevent

__all__ = ["MAX_RESPONSE_BYTES", "post"]

MAX_RESPONSE_BYTES = 64 * 1024
"""What is read of a receiver's answer: only its status matters."""


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; the status of the answer (raises OSError or TimeoutError)."""
    parts = urlsplit(url)
    factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = factory(parts.hostname or "", parts.port, timeout=timeout)
    try:
        with gevent.Timeout(timeout, TimeoutError(f"no answer within {timeout} s")):
            connection.request("POST", target, body, dict(headers))
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return response.status
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        connection.close()
