"""A real HTTP webhook receiver for the tests: a gevent WSGI server on a free port that verifies
each request's signature (the verification docs/webhooks.md gives receivers), records what
arrived and when, and answers as the test tells it (fail the first N deliveries of each event,
or always).

Waiting is on events, never on sleeps: ``wait_for(n)`` returns once n requests arrived.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from actorim.domain.webhooks import SIGNATURE_HEADER, verify

__all__ = ["Arrival", "Receiver"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request as the receiver got it."""

    at: float  # time.monotonic() on arrival
    event: dict[str, Any]  # the JSON envelope
    signed: bool  # the signature verified under the receiver's secret
    status: int  # what the receiver answered
    header: str = ""  # the Actorim-Signature header as sent
    body: bytes = b""  # the raw body as sent


class Receiver:
    """A webhook endpoint; ``answer(envelope, nth delivery of its event) -> status``."""

    def __init__(self, secret: str, answer: Callable[[dict[str, Any], int], int] | None = None):
        self.secret = secret
        self.answer = answer or (lambda event, nth: 200)
        self.arrivals: list[Arrival] = []
        self._arrived = Event()
        # Cleared: requests are held unanswered (a receiver that hangs) until released.
        self._open = Event()
        self._open.set()
        self._server = WSGIServer(("127.0.0.1", 0), self._app, log=None, error_log=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks"

    def start(self) -> Receiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def hold(self) -> None:
        """Hang every request from now on until ``release``; a held request is recorded with
        status 0 (its sender gave up or died meanwhile) and answered 503 when released."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        if not self._open.is_set():
            self.arrivals.append(Arrival(time.monotonic(), json.loads(body), True, 0))
            self._arrived.set()
            self._open.wait()
            start_response("503 Held", [("Content-Length", "0")])
            return [b""]
        header = environ.get("HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_"), "")
        signed = verify(self.secret, header, body, now=time.time())
        event = json.loads(body)
        nth = 1 + sum(1 for a in self.arrivals if a.event["id"] == event["id"])
        status = self.answer(event, nth) if signed else 400
        self.arrivals.append(Arrival(time.monotonic(), event, signed, status, header, body))
        self._arrived.set()
        start_response(f"{status} X", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    def wait_for(self, count: int, *, timeout: float = 20.0, what: str = "") -> list[Arrival]:
        """The arrivals once there are at least ``count``; fails after ``timeout``."""
        try:
            with gevent.Timeout(timeout):
                while len(self.arrivals) < count:
                    self._arrived.clear()
                    self._arrived.wait()
        except gevent.Timeout:
            got = [(a.event["id"], a.status) for a in self.arrivals]
            raise AssertionError(
                f"{what or 'requests'}: {len(got)} of {count} arrived: {got}"
            ) from None
        return list(self.arrivals)

    def delivered(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in order of arrival."""
        return [a.event for a in self.arrivals if 200 <= a.status < 300]
