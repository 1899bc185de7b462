"""Every use of gevent's socket internals and of pywsgi's private handler API, in one place.

The WebSocket layer needs a few things gevent does not offer publicly: a read or write that
never waits (from a callback on the hub, which must never block), closing a descriptor at once
while a file object still refers to it, writing a 101 response pywsgi did not build, keeping
pywsgi's clean-up away from a socket a detached connection now owns, answering a request
pywsgi found invalid with something other than its 400, building the environ's ``HTTP_*``
entries from the parsed headers, and knowing that the access log is off. This module is the
only code that touches those names; `actorim.web.websocket` calls the small functions here.

Each internal is listed in :data:`SHAPE_CHECKS` with a check, and :func:`shape_problems` names
the versions installed and what changed, so that an upgrade of gevent or gevent-websocket
fails one test loudly (``tests/test_compat.py``) instead of stalling connections quietly.
setup.cfg pins both to the ranges these were read from (:data:`VERSIONS_READ`).
"""

from __future__ import annotations

import _socket
import inspect
import re
import socket as _stdsocket
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import gevent.socket
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.pywsgi import _NoopLog as _NoAccessLog
from geventwebsocket.handler import WebSocketHandler as _GeventWebSocketHandler

from actorim.web.headers import RequestHeaders

__all__ = [
    "VERSIONS_READ",
    "ClientErrorHook",
    "ParsedHeadersEnviron",
    "ShapeCheck",
    "access_log_off",
    "close_now",
    "recv_now",
    "release_socket",
    "send_now",
    "send_response_head",
    "shape_problems",
    "versions",
]

VERSIONS_READ = "gevent 24.2 to 26.9, gevent-websocket 0.10.1"
"""The versions whose source these internals were read from."""

ClientErrorAnswer = tuple[str, bytes] | None
"""pywsgi's answer to an invalid request: (status, the complete response), or None to close
the connection without one."""


# -- gevent sockets ------------------------------------------------------------------------------


def recv_now(sock: _stdsocket.socket, size: int) -> bytes:
    """Read what the socket holds now, at most ``size`` bytes; ``BlockingIOError`` if nothing.

    gevent's ``recv`` would wait for data, switching to the hub: impossible in a callback that
    runs on the hub. gevent keeps the real, non-blocking socket in ``_sock``.
    """
    return sock._sock.recv(size)  # type: ignore[attr-defined]


def send_now(sock: _stdsocket.socket, data: bytes) -> int:
    """Write what the socket takes now; returns the bytes written, ``BlockingIOError`` if none
    (see :func:`recv_now`)."""
    return sock._sock.send(data)  # type: ignore[attr-defined]


def close_now(sock: _stdsocket.socket) -> None:
    """Close the descriptor at once, even while a file object (pywsgi's read buffer) still
    refers to the socket: gevent's ``close`` would wait for that object to let go, and wakes a
    greenlet blocked on the socket with an error either way."""
    real_close = getattr(sock, "_real_close", None)
    if real_close is None:  # not a gevent socket
        sock.close()
    else:
        real_close()


# -- pywsgi's handler ----------------------------------------------------------------------------


def send_response_head(handler: WSGIHandler, status: str, head: bytes) -> None:
    """Write a response head the handler did not build (a 101), and record it as pywsgi's own
    ``start_response`` would, so that logging and keep-alive see it: status, code, headers sent,
    connection closing after this request."""
    handler.close_connection = True
    handler.status = status.encode("latin-1")
    handler._orig_status = status  # pywsgi logs this native string
    handler.code = int(status.split(None, 1)[0])
    handler.headers_sent = True
    handler._sendall(head)


def release_socket(handler: WSGIHandler) -> None:
    """Take the socket away from the handler's clean-up, which would read ("drain") it before
    closing it: its bytes now belong to a connection that lives on without the handler."""
    handler.socket = None


class ClientErrorHook(WSGIHandler):
    """Give pywsgi's answer to an invalid request (``_handle_client_error``) a public name.

    Override :meth:`answer_client_error`; its default is pywsgi's own answer (400).
    """

    def answer_client_error(self, ex: BaseException) -> ClientErrorAnswer:
        """What to send for a request pywsgi found invalid (``ex`` says why)."""
        return WSGIHandler._handle_client_error(self, ex)

    def _handle_client_error(self, ex: BaseException) -> ClientErrorAnswer:
        return self.answer_client_error(ex)


class ParsedHeadersEnviron(WSGIHandler):
    """Build the environ's ``HTTP_*`` entries (pywsgi's ``_headers``) from headers already
    parsed into a :class:`RequestHeaders`, instead of formatting each as a line and splitting it
    again; any other headers object goes pywsgi's way."""

    def _headers(self) -> Any:
        headers = self.headers
        if isinstance(headers, RequestHeaders):
            return headers.environ_items()
        return WSGIHandler._headers(self)


def access_log_off(server: WSGIServer) -> bool:
    """Whether the server was made with ``log=None``: pywsgi still formats every request's log
    line (a clock read, a date, a format) only to write it nowhere."""
    return isinstance(server.log, _NoAccessLog)


# -- the shape relied on -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShapeCheck:
    """One internal relied on, and a check that returns what changed (None when unchanged)."""

    name: str
    used_for: str
    check: Callable[[], str | None]


def _params(func: Any, expected: list[str]) -> str | None:
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return f"{func!r} has no readable signature"
    if params != expected:
        return f"its parameters are now {params}, not {expected}"
    return None


def _raw_socket() -> str | None:
    left, right = gevent.socket.socketpair()
    try:
        raw = getattr(left, "_sock", None)
        if not isinstance(raw, _socket.socket):
            return f"a gevent socket's _sock is now {type(raw).__name__}, not a _socket.socket"
        if raw.fileno() != left.fileno() or raw.gettimeout() != 0.0:
            return "a gevent socket's _sock is no longer its own descriptor, non-blocking"
        try:
            recv_now(left, 16)
        except BlockingIOError:
            pass
        else:
            return "reading _sock with nothing to read no longer raises BlockingIOError"
        if send_now(right, b"ping") != 4 or recv_now(left, 16) != b"ping":
            return "a write and a read on _sock no longer move the bytes at once"
    finally:
        left.close()
        right.close()
    return None


def _real_close() -> str | None:
    left, right = gevent.socket.socketpair()
    try:
        if not callable(getattr(left, "_real_close", None)):
            return "a gevent socket's _real_close is gone"
        reader = left.makefile("rb")
        left.close()
        if left.fileno() == -1:
            return "close() now closes the descriptor while a file object refers to it"
        close_now(left)
        if left.fileno() != -1:
            return "_real_close() no longer closes the descriptor at once"
        reader.close()
    finally:
        left.close()
        right.close()
    return None


def _client_error_hook() -> str | None:
    method = getattr(WSGIHandler, "_handle_client_error", None)
    if method is None:
        return "WSGIHandler._handle_client_error is gone"
    if "_handle_client_error" in vars(_GeventWebSocketHandler):
        return "gevent-websocket's handler now overrides _handle_client_error"
    if "self._handle_client_error(" not in inspect.getsource(WSGIHandler.handle_one_request):
        return "handle_one_request no longer answers invalid requests with _handle_client_error"
    return _params(method, ["self", "ex"])


def _response_head() -> str | None:
    sendall = getattr(WSGIHandler, "_sendall", None)
    if sendall is None:
        return "WSGIHandler._sendall is gone"
    problem = _params(sendall, ["self", "data"])
    if problem is not None:
        return f"WSGIHandler._sendall: {problem}"
    for name in ("_orig_status", "status", "code", "headers_sent", "close_connection"):
        if not hasattr(WSGIHandler, name):
            return f"WSGIHandler.{name} is gone"
    if "self._orig_status" not in inspect.getsource(WSGIHandler.format_request):
        return "WSGIHandler.format_request no longer logs _orig_status"
    return None


def _socket_clean_up() -> str | None:
    source = inspect.getsource(WSGIHandler.handle)
    if "if self.socket is not None:" not in source:
        return "WSGIHandler.handle no longer skips its clean-up of a socket set to None"
    return None


# What pywsgi reads from its MessageClass's object; RequestHeaders offers each.
_HEADER_USES = re.compile(r"self\.headers\.(\w+)")


def _message_class() -> str | None:
    if "self.MessageClass(self.rfile, 0)" not in inspect.getsource(WSGIHandler.read_request):
        return "WSGIHandler.read_request no longer reads headers with MessageClass(rfile, 0)"
    source = inspect.getsource(WSGIHandler)
    used = set(_HEADER_USES.findall(source))
    if "del self.headers[" in source:
        used.add("__delitem__")
    missing = sorted(name for name in used if not hasattr(RequestHeaders, name))
    if missing:
        return f"pywsgi now uses headers.{', headers.'.join(missing)}, which RequestHeaders lacks"
    return None


# gevent-websocket 0.10.1's handler overrides these of pywsgi's; actorim's handler replaces
# run_application, start_response and log_request and calls none of the others. Anything new
# would run in actorim's handler unreviewed.
_GEVENTWEBSOCKET_OVERRIDES = frozenset(
    {
        "run_websocket",
        "run_application",
        "upgrade_websocket",
        "upgrade_connection",
        "logger",
        "log_request",
        "active_client",
        "start_response",
        "_prepare_response",
    }
)


def _environ_headers() -> str | None:
    method = getattr(WSGIHandler, "_headers", None)
    if method is None:
        return "WSGIHandler._headers is gone"
    if "self._headers()" not in inspect.getsource(WSGIHandler.get_environ):
        return "WSGIHandler.get_environ no longer takes the HTTP_* entries from _headers()"
    if "IGNORED_KEYS = (None, 'CONTENT_TYPE', 'CONTENT_LENGTH')" not in inspect.getsource(method):
        return "WSGIHandler._headers no longer leaves out exactly CONTENT_TYPE and CONTENT_LENGTH"
    return _params(method, ["self"])


def _access_log() -> str | None:
    server = WSGIServer(("127.0.0.1", 0), lambda *_: [], log=None)
    if not isinstance(server.log, _NoAccessLog):
        return f"a server made with log=None now logs to {type(server.log).__name__}"
    if "self.server.log.write(" not in inspect.getsource(WSGIHandler.log_request):
        return "WSGIHandler.log_request no longer writes only to server.log"
    return None


def _geventwebsocket_overrides() -> str | None:
    defined = {
        name
        for name, value in vars(_GeventWebSocketHandler).items()
        if callable(value) or isinstance(value, property)
    }
    new = sorted(defined - _GEVENTWEBSOCKET_OVERRIDES)
    if new:
        return f"its handler now also defines {new}, which actorim's handler would inherit"
    return None


SHAPE_CHECKS: tuple[ShapeCheck, ...] = (
    ShapeCheck("socket._sock", "reads and writes from a callback on the hub", _raw_socket),
    ShapeCheck("socket._real_close", "freeing an evicted handshake's descriptor", _real_close),
    ShapeCheck("WSGIHandler._handle_client_error", "431 for oversized headers", _client_error_hook),
    ShapeCheck("WSGIHandler._sendall and _orig_status", "writing the 101", _response_head),
    ShapeCheck("WSGIHandler.handle clean-up", "detaching a WebSocket", _socket_clean_up),
    ShapeCheck("WSGIHandler.MessageClass", "the fast header reader", _message_class),
    ShapeCheck("WSGIHandler._headers", "the environ from parsed headers", _environ_headers),
    ShapeCheck("pywsgi._NoopLog", "no access log line when the log is off", _access_log),
    ShapeCheck("geventwebsocket WebSocketHandler", "actorim's handler", _geventwebsocket_overrides),
)
"""What `actorim.web` relies on in gevent and gevent-websocket, each with its check."""


def versions() -> str:
    """The installed versions, as named in :data:`VERSIONS_READ`."""
    return f"gevent {version('gevent')}, gevent-websocket {version('gevent-websocket')}"


def shape_problems() -> list[str]:
    """What changed in the installed gevent or gevent-websocket, one sentence per internal;
    empty when nothing did."""
    problems = []
    for item in SHAPE_CHECKS:
        try:
            problem = item.check()
        except Exception as exc:
            problem = f"checking it raised {exc!r}"
        if problem is not None:
            problems.append(
                f"{versions()} (internals read from {VERSIONS_READ}) changed {item.name}, "
                f"used for {item.used_for}: {problem}"
            )
    return problems
