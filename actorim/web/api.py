"""The server API: ``/api/v1``, JSON over HTTP, for the application that runs beside actorim.

Every node serves it from its WSGI app on its own port. What each endpoint does is
``actorim.runtime.operations.Operations`` (the embedding ``Node`` calls the same); this module
only speaks HTTP: it authenticates, rate limits, reads and checks the request, and turns
answers and errors into JSON. docs/api.md describes every endpoint and ``/api/v1/openapi.json``
(``actorim.web.openapi``) is the contract, which the tests hold the live answers to.

Order of checks, each with its own status and a JSON body ``{"error": {"code", "message"}}``:

1. no key configured (``api_keys`` empty): 404 ``not_found`` for every path: the API is off;
2. no ``Authorization: Bearer <key>`` header, or a key that matches no configured hash: 401
   ``unauthenticated`` (with ``WWW-Authenticate: Bearer``);
3. the key's token bucket is empty (``api_rate``, ``api_burst``): 429 ``rate_limited`` with
   ``Retry-After`` in whole seconds;
4. unknown path: 404; known path, other method: 405 with ``Allow``;
5. a body longer than ``api_max_body``: 413 ``too_large``, unread; a body that is not a JSON
   object, a missing, unknown or ill-typed field: 400 ``bad_request`` naming it, nothing changed;
6. what the request names does not exist (a room): 404 ``not_found``; it contradicts what is
   stored (a room that exists, a user in as many rooms as allowed): 409 ``conflict``; nothing
   changed either way;
7. the store or the presence tracker cannot answer now: 503 ``unavailable`` (retry).

Keys have no scopes yet: every valid key may call every endpoint, so there is no 403 today (it is
kept for scopes).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import gevent

from actorim.domain.apikeys import ApiKeys
from actorim.domain.ratelimit import TokenBucket
from actorim.protocol.commands import MAX_CID_LENGTH
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.events import message_event
from actorim.runtime.context import Unavailable
from actorim.runtime.operations import Conflict, InvalidRequest, NotFound, Operations
from actorim.web.openapi import openapi_document

if TYPE_CHECKING:
    from actorim.config import Config

__all__ = ["PREFIX", "ServerApi"]

logger = logging.getLogger("actorim.api")

StartResponse = Callable[..., Any]

PREFIX = "/api/v1"
"""Where the server API is mounted; a later, incompatible version gets a prefix of its own."""

MAX_KEYS_TRACKED = 64
"""Rate limit buckets are kept per configured key, so there are as many as keys: a bound for
a configuration gone wild, past which the oldest bucket is forgotten (refilled)."""

_USER_PATH = re.compile(r"/users/([^/]+)/(sessions|disconnect|erase)")
_ROOM_PATH = re.compile(r"/rooms/([^/]+)(?:/members(?:/([^/]+))?)?")
_ROOM_MEMBERS_PATH = re.compile(r"/rooms/[^/]+/members")
_DEAD_PATH = re.compile(r"/webhooks/dead/([^/]+)(/retry)?")
_MODERATION_PATH = re.compile(r"/rooms/([^/]+)/(?:roles/([^/]+)|(moderation|audit))")

# A command error's code as an HTTP status (errors raised by the store or the protocol).
_STATUS_OF = {
    ErrorCode.BAD_REQUEST: "400 Bad Request",
    ErrorCode.FORBIDDEN: "403 Forbidden",
    ErrorCode.NOT_MODERATOR: "403 Forbidden",
    ErrorCode.OUTRANKED: "403 Forbidden",
    ErrorCode.NOT_FOUND: "404 Not Found",
    ErrorCode.RATE_LIMITED: "429 Too Many Requests",
    ErrorCode.OVERLOADED: "503 Service Unavailable",
}


class ApiError(Exception):
    """An answer other than success: HTTP status, error code and message (and headers)."""

    def __init__(
        self, status: str, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


def _bad(message: str) -> ApiError:
    return ApiError("400 Bad Request", "bad_request", message)


class ServerApi:
    """The ``/api/v1`` WSGI handler of one node; see the module docstring."""

    def __init__(self, config: Config, operations: Operations) -> None:
        self.config = config
        self.operations = operations
        self.keys = ApiKeys.parse(config.api_keys)
        self._buckets: dict[str, TokenBucket] = {}
        self._routes: dict[str, dict[str, Callable[[dict[str, Any]], tuple[str, Any]]]] = {
            "/messages": {"POST": self._publish},
            "/rooms": {"POST": self._create_room},
            "/presence": {"GET": self._presence},
            "/history": {"GET": self._history},
            "/revocations": {"POST": self._revoke},
            "/webhooks/dead": {"GET": self._dead_letters},
            "/openapi.json": {"GET": self._openapi},
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, answer = self._answer(environ)
            return _json(start_response, status, answer)
        except ApiError as exc:
            error = {"error": {"code": exc.code, "message": exc.message}}
            return _json(start_response, exc.status, error, exc.headers)

    def _answer(self, environ: dict[str, Any]) -> tuple[str, Any]:
        if not self.keys.enabled:
            raise ApiError("404 Not Found", "not_found", "not found")
        self._authenticate(environ)
        path = environ.get("PATH_INFO", "")[len(PREFIX) :]
        method = environ.get("REQUEST_METHOD", "GET")
        handlers, user = self._routes.get(path), None
        if handlers is None:
            handlers = self._dead_letter_route(path)
        if handlers is None:
            handlers = self._moderation_route(path)
        if handlers is None:
            handlers = self._room_route(path)
        if handlers is None:
            match = _USER_PATH.fullmatch(path)
            if match is None:
                raise ApiError("404 Not Found", "not_found", f"no endpoint {PREFIX}{path}")
            user = unquote(match.group(1))
            if match.group(2) == "sessions":
                handlers = {"GET": lambda request: self._sessions(user, request)}
            elif match.group(2) == "erase":
                handlers = {"POST": lambda request: self._erase(user, request)}
            else:
                handlers = {"POST": lambda request: self._disconnect(user, request)}
        handler = handlers.get(method)
        if handler is None:
            allow = ", ".join(handlers)
            raise ApiError(
                "405 Method Not Allowed",
                "method_not_allowed",
                f"use {allow} on {PREFIX}{path}",
                [("Allow", allow)],
            )
        request = {"query": parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)}
        if method in ("POST", "PATCH", "PUT"):
            empty = environ.get("CONTENT_LENGTH") in (None, "", "0")
            bodiless = path.endswith("/retry") or method == "PUT"
            request["body"] = {} if empty and bodiless else self._body(environ)
        try:
            return handler(request)
        except ApiError:
            raise
        except InvalidRequest as exc:
            raise _bad(exc.message) from None
        except NotFound as exc:
            raise ApiError("404 Not Found", "not_found", exc.message) from None
        except Conflict as exc:
            raise ApiError("409 Conflict", "conflict", exc.message) from None
        except CommandError as exc:
            status = _STATUS_OF.get(exc.code, "500 Internal Server Error")
            raise ApiError(status, str(exc.code.value), exc.message) from None
        except (Unavailable, gevent.Timeout) as exc:
            raise ApiError(
                "503 Service Unavailable",
                "unavailable",
                f"the node cannot answer now ({exc}); retry in a moment",
                [("Retry-After", "1")],
            ) from None
        except Exception:
            logger.exception("server API request %s %s failed", method, path)
            raise ApiError(
                "500 Internal Server Error", "internal", "the request failed; see the server log"
            ) from None

    # -- the checks ------------------------------------------------------------------------------

    def _authenticate(self, environ: dict[str, Any]) -> None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, key = header.partition(" ")
        challenge = [("WWW-Authenticate", 'Bearer realm="actorim"')]
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(
                "401 Unauthorized",
                "unauthenticated",
                "send an API key: Authorization: Bearer <key>",
                challenge,
            )
        line = self.keys.check(key.strip())
        if line is None:
            raise ApiError(
                "401 Unauthorized",
                "unauthenticated",
                "the API key is not valid: check it against the api_keys setting",
                challenge,
            )
        self._limit(line)

    def _limit(self, line: str) -> None:
        now = time.monotonic()
        bucket = self._buckets.get(line)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS_TRACKED:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[line] = TokenBucket(
                self.config.api_rate, self.config.api_burst, now
            )
        if not bucket.take(now):
            wait = max(1, math.ceil((1 - bucket.available(now)) / self.config.api_rate))
            raise ApiError(
                "429 Too Many Requests",
                "rate_limited",
                f"too many requests with this key: retry in {wait} s",
                [("Retry-After", str(wait))],
            )

    def _body(self, environ: dict[str, Any]) -> dict[str, Any]:
        limit = self.config.api_max_body
        too_large = ApiError(
            "413 Content Too Large",
            "too_large",
            f"the request body is over {limit} bytes (the api_max_body setting)",
        )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _bad("Content-Length is not a number") from None
        if length > limit:
            raise too_large
        data = environ["wsgi.input"].read(length if length else limit + 1)
        if len(data) > limit:
            raise too_large
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _bad("the request body is not JSON: send a JSON object") from None
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object")
        return body

    # -- the endpoints ---------------------------------------------------------------------------

    def _publish(self, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(request["body"], required={"body"}, optional=_PUBLISH_OPTIONAL)
        if "from" in body and body["from"] is None:
            raise _bad("field 'from' must be a user id, or left out to publish as the system")
        cid = body.get("id")
        if cid is not None and (type(cid) is not str or not 0 < len(cid) <= MAX_CID_LENGTH):
            raise _bad(f"field 'id' must be a string of 1-{MAX_CID_LENGTH} characters")
        stored = self.operations.publish(
            body["body"],
            room=body.get("room"),
            to=body.get("to"),
            sender=body.get("from", "system"),
            kind=body.get("kind", "text"),
            cid=body.get("id"),
        )
        event = message_event(stored)
        answer: dict[str, Any] = {
            k: event[k] for k in ("mid", "seq", "room", "to", "from", "kind", "ts") if k in event
        }
        if stored.cid is not None:
            answer["id"] = stored.cid
        return "200 OK", answer

    def _presence(self, request: dict[str, Any]) -> tuple[str, Any]:
        users = _query_list(request["query"], "users")
        return "200 OK", {"statuses": self.operations.presence(users)}

    def _history(self, request: dict[str, Any]) -> tuple[str, Any]:
        query = request["query"]
        _known(query, {"room", "with", "before", "after", "limit"})
        room = _query_one(query, "room")
        between: tuple[str, str] | None = None
        if "with" in query:
            pair = _query_list(query, "with")
            if len(pair) != 2:
                raise _bad("with must be two user ids, comma-separated: with=alice,bob")
            between = (pair[0], pair[1])
        if (room is None) == (between is None):
            raise _bad("give exactly one of room= and with=")
        page = self.operations.history(
            room=room,
            between=between,
            before=_query_int(query, "before"),
            after=_query_int(query, "after"),
            limit=_query_int(query, "limit"),
        )
        return "200 OK", page

    def _sessions(self, user: str, request: dict[str, Any]) -> tuple[str, Any]:
        return "200 OK", {"sessions": self.operations.sessions(user)}

    def _disconnect(self, user: str, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(request["body"], required=set(), optional={"session", "code", "reason"})
        code = body.get("code", 4000)
        self.operations.disconnect(
            user, session=body.get("session"), code=code, reason=body.get("reason", "")
        )
        answer = {"user": user, "session": body.get("session"), "code": code}
        return "202 Accepted", answer

    def _revoke(self, request: dict[str, Any]) -> tuple[str, Any]:
        body = request["body"]
        if ("jti" in body) == ("user" in body):
            raise _bad("give exactly one of the fields 'jti' and 'user'")
        if "jti" in body:
            body = _fields(body, required={"jti"}, optional={"expires_at"})
            expires_at = _optional_time(body, "expires_at")
            self.operations.revoke_token(body["jti"], expires_at=expires_at)
            return "200 OK", {"revoked": {"jti": body["jti"]}}
        body = _fields(body, required={"user"}, optional={"before", "until"})
        before, until = _optional_time(body, "before"), _optional_time(body, "until")
        self.operations.revoke_user(body["user"], before=before, until=until)
        return "200 OK", {"revoked": {"user": body["user"]}}

    def _dead_letter_route(
        self, path: str
    ) -> dict[str, Callable[[dict[str, Any]], tuple[str, Any]]] | None:
        """The handlers of ``/webhooks/dead/{id}`` (DELETE) and ``/webhooks/dead/{id}/retry``
        (POST), or None for another path."""
        match = _DEAD_PATH.fullmatch(path)
        if match is None:
            return None
        key = unquote(match.group(1))
        if match.group(2):
            return {"POST": lambda request: self._retry_dead_letter(key, request)}
        return {"DELETE": lambda request: self._delete_dead_letter(key)}

    def _dead_letters(self, request: dict[str, Any]) -> tuple[str, Any]:
        query = request["query"]
        _known(query, {"limit", "after"})
        limit = _query_int(query, "limit")
        after = _query_one(query, "after")
        if limit is not None:
            return "200 OK", self.operations.dead_letters(limit=limit, after=after)
        return "200 OK", self.operations.dead_letters(after=after)

    def _retry_dead_letter(self, key: str, request: dict[str, Any]) -> tuple[str, Any]:
        _fields(request["body"], required=set(), optional=set())
        if not self.operations.retry_dead_letter(key):
            raise _no_dead_letter(key)
        return "200 OK", {"retried": key}

    def _delete_dead_letter(self, key: str) -> tuple[str, Any]:
        if not self.operations.delete_dead_letter(key):
            raise _no_dead_letter(key)
        return "200 OK", {"deleted": key}

    def _moderation_route(
        self, path: str
    ) -> dict[str, Callable[[dict[str, Any]], tuple[str, Any]]] | None:
        """The handlers of ``/rooms/{room}/roles/{user}`` (GET, PUT),
        ``/rooms/{room}/moderation`` (POST) and ``/rooms/{room}/audit`` (GET), or None."""
        match = _MODERATION_PATH.fullmatch(path)
        if match is None:
            return None
        room = unquote(match.group(1))
        if match.group(2) is not None:
            user = unquote(match.group(2))
            return {
                "GET": lambda request: self._standing(room, user, request),
                "PUT": lambda request: self._set_role(room, user, request),
            }
        if match.group(3) == "moderation":
            return {"POST": lambda request: self._moderate(room, request)}
        return {"GET": lambda request: self._audit(room, request)}

    def _standing(self, room: str, user: str, request: dict[str, Any]) -> tuple[str, Any]:
        _known(request["query"], set())
        return "200 OK", self.operations.standing(room, user)

    def _set_role(self, room: str, user: str, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(request["body"], required={"role"}, optional={"by"})
        by = body.get("by", "system")
        return "200 OK", self.operations.set_role(room, user, body["role"], by=by)

    def _moderate(self, room: str, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(
            request["body"], required={"action"}, optional={"user", "mid", "by", "reason", "for"}
        )
        entry = self.operations.moderate(
            room,
            body["action"],
            user=body.get("user"),
            mid=body.get("mid"),
            by=body.get("by", "system"),
            reason=body.get("reason", ""),
            for_s=body.get("for"),
        )
        return "200 OK", entry

    def _audit(self, room: str, request: dict[str, Any]) -> tuple[str, Any]:
        query = request["query"]
        _known(query, {"before", "limit"})
        page = self.operations.audit(
            room, before=_query_one(query, "before"), limit=_query_int(query, "limit")
        )
        return "200 OK", page

    # -- rooms and membership ------------------------------------------------------------------

    def _room_route(
        self, path: str
    ) -> dict[str, Callable[[dict[str, Any]], tuple[str, Any]]] | None:
        """The handlers of ``/rooms/{room}``, ``/rooms/{room}/members`` and
        ``/rooms/{room}/members/{user}``, or None for another path."""
        match = _ROOM_PATH.fullmatch(path)
        if match is None:
            return None
        room = unquote(match.group(1))
        if match.group(2) is not None:
            user = unquote(match.group(2))
            return {
                "PUT": lambda request: self._add_member(room, user, request),
                "DELETE": lambda request: self._remove_member(room, user),
            }
        if _ROOM_MEMBERS_PATH.fullmatch(path):
            return {"GET": lambda request: self._members(room, request)}
        return {
            "GET": lambda request: ("200 OK", self.operations.room(room)),
            "PATCH": lambda request: self._update_room(room, request),
            "DELETE": lambda request: self._delete_room(room),
        }

    def _create_room(self, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(
            request["body"], required={"room"}, optional={"title", "topic", "public", "members"}
        )
        for name in ("title", "topic"):
            if name in body and type(body[name]) is not str:
                raise _bad(f"field '{name}' must be a string")
        answer = self.operations.create_room(
            body["room"],
            title=body.get("title", ""),
            topic=body.get("topic", ""),
            public=body.get("public", True),
            members=body.get("members", []),
        )
        return "201 Created", answer

    def _update_room(self, room: str, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(request["body"], required=set(), optional={"title", "topic", "public"})
        for name in body:
            if body[name] is None:
                raise _bad(f"field '{name}' must not be null: leave it out to keep it")
        info = self.operations.update_room(
            room, title=body.get("title"), topic=body.get("topic"), public=body.get("public")
        )
        return "200 OK", info

    def _delete_room(self, room: str) -> tuple[str, Any]:
        members = self.operations.delete_room(room)
        return "200 OK", {"deleted": room, "members": members}

    def _members(self, room: str, request: dict[str, Any]) -> tuple[str, Any]:
        query = request["query"]
        _known(query, {"after", "limit"})
        page = self.operations.members(
            room, after=_query_one(query, "after"), limit=_query_int(query, "limit")
        )
        return "200 OK", page

    def _add_member(self, room: str, user: str, request: dict[str, Any]) -> tuple[str, Any]:
        _fields(request["body"], required=set(), optional=set())
        added = self.operations.add_member(room, user)
        return "200 OK", {"room": room, "user": user, "added": added}

    def _remove_member(self, room: str, user: str) -> tuple[str, Any]:
        removed = self.operations.remove_member(room, user)
        return "200 OK", {"room": room, "user": user, "removed": removed}

    def _erase(self, user: str, request: dict[str, Any]) -> tuple[str, Any]:
        body = _fields(request["body"], required=set(), optional={"room", "with"})
        return "200 OK", self.operations.erase(user, room=body.get("room"), with_=body.get("with"))

    def _openapi(self, request: dict[str, Any]) -> tuple[str, Any]:
        return "200 OK", openapi_document()


_PUBLISH_OPTIONAL = {"room", "to", "from", "kind", "id"}


def _no_dead_letter(key: str) -> ApiError:
    return ApiError(
        "404 Not Found",
        "not_found",
        f"no dead webhook event {key!r}: list them with GET {PREFIX}/webhooks/dead",
    )


def _fields(body: dict[str, Any], *, required: set[str], optional: set[str]) -> dict[str, Any]:
    """``body`` once it has every ``required`` field and no field outside both sets."""
    for name in sorted(required):
        if name not in body:
            raise _bad(f"field '{name}' is required")
    unknown = sorted(set(body) - required - optional)
    if unknown and not required | optional:
        raise _bad(f"unknown field '{unknown[0]}': send no body, or {{}}")
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise _bad(f"unknown field '{unknown[0]}': the fields are {known}")
    return body


def _optional_time(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _bad(f"field '{name}' must be a time in seconds since the epoch")
    return float(value)


def _known(query: dict[str, list[str]], names: set[str]) -> None:
    unknown = sorted(set(query) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise _bad(f"unknown parameter '{unknown[0]}': the parameters are {known}")


def _query_one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise _bad(f"give the parameter '{name}' once")
    return values[0]


def _query_list(query: dict[str, list[str]], name: str) -> list[str]:
    value = _query_one(query, name)
    if value is None:
        raise _bad(f"the parameter '{name}' is required (comma-separated)")
    return [item for item in value.split(",") if item] if value else []


def _query_int(query: dict[str, list[str]], name: str) -> int | None:
    value = _query_one(query, name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise _bad(f"the parameter '{name}' must be a whole number")
    return int(value)


def _json(
    start_response: StartResponse,
    status: str,
    obj: Any,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(obj).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
    )
    return [data]
