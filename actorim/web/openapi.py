"""The OpenAPI 3.1 document of the server API, served at ``/api/v1/openapi.json``.

Written as data, beside the handlers in ``actorim.web.api``; tests/test_api.py validates the
document (openapi-spec-validator) and every live answer the tests get against the schema of its
endpoint and status, and checks the examples of docs/api.md against it too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_NAME = {"type": "string", "minLength": 1, "maxLength": 128}
_USER = {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        "bad_request",
                        "unauthenticated",
                        "forbidden",
                        "not_found",
                        "method_not_allowed",
                        "conflict",
                        "too_large",
                        "rate_limited",
                        "unavailable",
                        "overloaded",
                        "internal",
                    ],
                },
                "message": {"type": "string"},
            },
        }
    },
}
_MESSAGE = {
    "type": "object",
    "description": "A stored message as the WebSocket msg event carries it (or an edit/delete).",
    "required": ["t", "mid", "seq"],
    "properties": {
        "t": {"type": "string", "enum": ["msg", "edit", "delete"]},
        "mid": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1},
        "room": {"type": "string"},
        "to": {"type": "string"},
        "from": {"type": "string"},
        "by": {"type": "string"},
        "kind": {"type": "string"},
        "body": {},
        "deleted": {"type": "boolean"},
        "ts": {"type": "integer"},
        "edited": {"type": "integer"},
        "cid": {"type": "string"},
        "reply_to": {"type": "string", "description": "a reply: the mid of the message it answers"},
        "thread": {
            "description": "a reply: the mid of its thread's root; a root with replies: the"
            " thread's summary (replies counted, the latest's time, the first authors of all)",
            "oneOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer", "minimum": 1},
                        "last_ts": {"type": "integer"},
                        "users": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                        "participants": {"type": "integer", "minimum": 1},
                    },
                },
            ],
        },
    },
}
_PUBLISHED = {
    "type": "object",
    "required": ["mid", "seq", "from", "kind", "ts"],
    "additionalProperties": False,
    "properties": {
        "mid": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1},
        "room": {"type": "string"},
        "to": {"type": "string"},
        "from": {"type": "string"},
        "kind": {"type": "string"},
        "ts": {"type": "integer", "description": "milliseconds since the epoch"},
        "id": {"type": "string"},
    },
}
_SESSION = {
    "type": "object",
    "required": ["session", "user", "node", "since"],
    "properties": {
        "session": {"type": "string"},
        "user": {"type": "string"},
        "node": {"type": "string"},
        "since": {"type": "integer", "description": "milliseconds since the epoch"},
        "address": {"type": ["string", "null"]},
    },
}
_DEAD = {
    "type": "object",
    "description": "A webhook event to one endpoint, given up after webhook_max_attempts.",
    "required": ["id", "event", "type", "created", "endpoint", "attempts", "error", "dead", "data"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "description": "this entry's id (the event's, per endpoint)"},
        "event": {"type": "string", "description": "the event id receivers de-duplicate by"},
        "type": {"type": "string", "description": "message.created, user.online, ..."},
        "created": {"type": "integer", "description": "milliseconds since the epoch"},
        "endpoint": {"type": "string", "description": "the receiver's url"},
        "attempts": {"type": "integer", "minimum": 1},
        "error": {"type": "string", "description": "why the last attempt failed"},
        "dead": {"type": "integer", "description": "when it was given up (ms)"},
        "data": {"type": "object", "description": "the event's payload (docs/webhooks.md)"},
    },
}


_ROLE = {"type": "string", "enum": ["owner", "moderator", "member"]}
_AUDIT_ENTRY = {
    "type": "object",
    "description": "One line of a room's audit log (docs/moderation.md).",
    "required": ["id", "room", "ts", "by", "action", "user", "reason"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "description": "sorts by time; a page's cursor"},
        "room": {"type": "string"},
        "ts": {"type": "integer", "description": "milliseconds since the epoch"},
        "by": {"type": "string", "description": "who acted (the application: its by, system)"},
        "action": {
            "type": "string",
            "enum": ["kick", "ban", "unban", "mute", "unmute", "delete", "role"],
        },
        "user": {"type": "string", "description": "whom it was done to (a delete: the author)"},
        "reason": {"type": "string"},
        "until": {
            "type": ["integer", "null"],
            "description": "ban, mute: when it ends (ms), null for no expiry",
        },
        "mid": {"type": "string", "description": "delete: the message deleted"},
        "role": {**_ROLE, "description": "role: the role set"},
    },
}
_STANDING = {
    "type": "object",
    "required": ["room", "user", "role"],
    "additionalProperties": False,
    "properties": {
        "room": {"type": "string"},
        "user": {"type": "string"},
        "role": _ROLE,
        "banned_until": {
            "type": ["integer", "null"],
            "description": "while banned: when the ban ends (ms), null for no expiry",
        },
        "muted_until": {
            "type": ["integer", "null"],
            "description": "while muted: when the mute ends (ms), null for no expiry",
        },
    },
}
_ROOM = {
    "type": "object",
    "description": "A room's metadata and how many lasting members it has.",
    "required": ["room", "title", "topic", "public", "members"],
    "additionalProperties": False,
    "properties": {
        "room": {"type": "string"},
        "title": {"type": "string"},
        "topic": {"type": "string"},
        "public": {
            "type": "boolean",
            "description": "listed in the directory and open to any join the token allows;"
            " a private room admits only the members the application added",
        },
        "members": {"type": "integer", "minimum": 0},
    },
}


def _membership_answer(flag: str, description: str) -> dict[str, Any]:
    """The answer of an add (``added``) or a remove (``removed``) of a member."""
    return {
        "type": "object",
        "required": ["room", "user", flag],
        "additionalProperties": False,
        "properties": {
            "room": {"type": "string"},
            "user": {"type": "string"},
            flag: {"type": "boolean", "description": description},
        },
    }


_TITLE = {"type": "string", "maxLength": 100, "description": "empty: none"}
_TOPIC = {"type": "string", "maxLength": 500, "description": "empty: none"}


def _errors(*statuses: str) -> dict[str, Any]:
    why = {
        "400": "bad JSON, a missing, unknown or ill-typed field; nothing changed",
        "401": "no API key, or one that matches no configured hash",
        "404": "no such endpoint or room, or the API is off (no api_keys); nothing changed",
        "405": "another method is allowed here (see Allow)",
        "409": "it contradicts what is stored (the message says what); nothing changed",
        "413": "the body is over api_max_body bytes",
        "429": "this key's rate limit; retry after Retry-After seconds",
        "503": "the node cannot answer now; retry",
    }
    return {
        status: {
            "description": why[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in ("401", "404", "429", "503", *statuses)
    }


def _ok(description: str, schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {
        status: {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_SEQ = {"type": "integer", "minimum": 0}
_NO_BODY = {
    "required": False,
    "description": "none, or {}",
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False}}},
}


def openapi_document() -> dict[str, Any]:
    """The document (a new dict each call: the caller may change it)."""
    user_path = {
        "name": "user",
        "in": "path",
        "required": True,
        "description": "a user id",
        "schema": _USER,
    }
    room_path = {
        "name": "room",
        "in": "path",
        "required": True,
        "description": "a room name (URL-encoded)",
        "schema": _NAME,
    }
    dead_path = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "a dead entry's id, as listed",
        "schema": _NAME,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "actorim server API",
            "version": "1",
            "description": "Drive actorim from your application; see docs/api.md.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a key whose sha256 hash line is in api_keys",
                }
            },
            "schemas": {
                "Error": _ERROR,
                "AuditEntry": _AUDIT_ENTRY,
                "Message": _MESSAGE,
                "Published": _PUBLISHED,
                "Session": _SESSION,
                "DeadWebhook": _DEAD,
                "Room": _ROOM,
            },
        },
        "paths": {
            "/messages": {
                "post": {
                    "summary": "Publish a message to a room or a user",
                    "operationId": "publish",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "required": ["body"],
                            "additionalProperties": False,
                            "properties": {
                                "room": {**_NAME, "description": "exactly one of room and to"},
                                "to": {**_USER, "description": "a user: a direct message"},
                                "body": {"description": "any JSON value"},
                                "from": {**_USER, "description": "sender; default system"},
                                "kind": {"type": "string", "minLength": 1, "maxLength": 32},
                                "id": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": 64,
                                    "description": "idempotency id: the same id from the same "
                                    "sender in the same conversation answers the first message",
                                },
                            },
                        }
                    ),
                    "responses": {
                        **_ok("stored and delivered", {"$ref": "#/components/schemas/Published"}),
                        **_errors("400", "405", "413"),
                    },
                }
            },
            "/rooms": {
                "post": {
                    "summary": "Create a room, with members if given",
                    "operationId": "createRoom",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "required": ["room"],
                            "additionalProperties": False,
                            "properties": {
                                "room": _NAME,
                                "title": _TITLE,
                                "topic": _TOPIC,
                                "public": {"type": "boolean", "default": True},
                                "members": {
                                    "type": "array",
                                    "items": _USER,
                                    "description": "at most member_list_limit users to add",
                                },
                            },
                        }
                    ),
                    "responses": {
                        **_ok(
                            "created; the members' connections are joining it",
                            {
                                "type": "object",
                                "required": ["room", "full"],
                                "additionalProperties": False,
                                "properties": {
                                    "room": {"$ref": "#/components/schemas/Room"},
                                    "full": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "description": "members not added: they belong to"
                                        " max_rooms_per_user rooms",
                                    },
                                },
                            },
                            status="201",
                        ),
                        **_errors("400", "405", "409", "413"),
                    },
                }
            },
            "/rooms/{room}": {
                "get": {
                    "summary": "A room's metadata",
                    "operationId": "room",
                    "parameters": [room_path],
                    "responses": {
                        **_ok("the room", {"$ref": "#/components/schemas/Room"}),
                        **_errors("400", "405"),
                    },
                },
                "patch": {
                    "summary": "Change a room's title, topic or public flag",
                    "operationId": "updateRoom",
                    "parameters": [room_path],
                    "requestBody": _body(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "minProperties": 1,
                            "properties": {
                                "title": _TITLE,
                                "topic": _TOPIC,
                                "public": {"type": "boolean"},
                            },
                        }
                    ),
                    "responses": {
                        **_ok("the room after", {"$ref": "#/components/schemas/Room"}),
                        **_errors("400", "405", "413"),
                    },
                },
                "delete": {
                    "summary": "Delete a room: every member removed, its messages kept",
                    "operationId": "deleteRoom",
                    "parameters": [room_path],
                    "responses": {
                        **_ok(
                            "deleted; its members' connections are leaving it",
                            {
                                "type": "object",
                                "required": ["deleted", "members"],
                                "additionalProperties": False,
                                "properties": {
                                    "deleted": {"type": "string"},
                                    "members": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        ),
                        **_errors("400", "405"),
                    },
                },
            },
            "/rooms/{room}/members": {
                "get": {
                    "summary": "A page of a room's members with their presence",
                    "operationId": "members",
                    "parameters": [
                        room_path,
                        _query("after", "the cursor of the previous page", _NAME),
                        _query(
                            "limit",
                            "most members, at most member_list_limit (its default)",
                            {"type": "integer", "minimum": 1},
                        ),
                    ],
                    "responses": {
                        **_ok(
                            "members in id order",
                            {
                                "type": "object",
                                "required": ["members"],
                                "additionalProperties": False,
                                "properties": {
                                    "members": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["user", "status"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "user": {"type": "string"},
                                                "status": {
                                                    "type": "string",
                                                    "enum": ["online", "offline"],
                                                },
                                            },
                                        },
                                    },
                                    "cursor": {
                                        "type": "string",
                                        "description": "after= of the next page; absent: no more",
                                    },
                                },
                            },
                        ),
                        **_errors("400", "405"),
                    },
                }
            },
            "/rooms/{room}/members/{user}": {
                "put": {
                    "summary": "Make a user a member of a room (a private one too)",
                    "operationId": "addMember",
                    "parameters": [room_path, user_path],
                    "requestBody": _NO_BODY,
                    "responses": {
                        **_ok(
                            "a member; their connections are joining the room",
                            _membership_answer("added", "false: a member already"),
                        ),
                        **_errors("400", "405", "409", "413"),
                    },
                },
                "delete": {
                    "summary": "End a user's membership of a room",
                    "operationId": "removeMember",
                    "parameters": [room_path, user_path],
                    "responses": {
                        **_ok(
                            "not a member; their connections are leaving the room",
                            _membership_answer("removed", "false: was not a member"),
                        ),
                        **_errors("400", "405"),
                    },
                },
            },
            "/presence": {
                "get": {
                    "summary": "Statuses of users",
                    "operationId": "presence",
                    "parameters": [
                        _query(
                            "users",
                            "comma-separated user ids, at most 1000",
                            {"type": "string"},
                            required=True,
                        )
                    ],
                    "responses": {
                        **_ok(
                            "each user's status",
                            {
                                "type": "object",
                                "required": ["statuses"],
                                "properties": {
                                    "statuses": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "type": "string",
                                            "enum": ["online", "offline"],
                                        },
                                    }
                                },
                            },
                        ),
                        **_errors("400", "405"),
                    },
                }
            },
            "/users/{user}/sessions": {
                "get": {
                    "summary": "A user's live sessions, on every node",
                    "operationId": "sessions",
                    "parameters": [user_path],
                    "responses": {
                        **_ok(
                            "the sessions",
                            {
                                "type": "object",
                                "required": ["sessions"],
                                "properties": {
                                    "sessions": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Session"},
                                    }
                                },
                            },
                        ),
                        **_errors("400", "405"),
                    },
                }
            },
            "/users/{user}/disconnect": {
                "post": {
                    "summary": "Close a user's connections (or one session), on every node",
                    "operationId": "disconnect",
                    "parameters": [user_path],
                    "requestBody": _body(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "session": {"type": "string", "minLength": 1, "maxLength": 64},
                                "code": {
                                    "type": "integer",
                                    "minimum": 4000,
                                    "maximum": 4999,
                                    "default": 4000,
                                },
                                "reason": {"type": "string", "description": "at most 123 bytes"},
                            },
                        }
                    ),
                    "responses": {
                        **_ok(
                            "the close is on its way to every node",
                            {
                                "type": "object",
                                "required": ["user", "session", "code"],
                                "properties": {
                                    "user": {"type": "string"},
                                    "session": {"type": ["string", "null"]},
                                    "code": {"type": "integer"},
                                },
                            },
                            status="202",
                        ),
                        **_errors("400", "405", "413"),
                    },
                }
            },
            "/users/{user}/erase": {
                "post": {
                    "summary": "Delete a user's messages (all, or in one conversation)",
                    "operationId": "erase",
                    "parameters": [user_path],
                    "requestBody": _body(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "room": {**_NAME, "description": "only in this room"},
                                "with": {
                                    **_USER,
                                    "description": "only in the direct conversation with this"
                                    " user (at most one of room and with; neither: every"
                                    " conversation the user takes part in now)",
                                },
                            },
                        }
                    ),
                    "responses": {
                        **_ok(
                            "deleted as the author's own deletes; call again while more",
                            {
                                "type": "object",
                                "required": ["erased", "more"],
                                "additionalProperties": False,
                                "properties": {
                                    "erased": {
                                        "type": "integer",
                                        "minimum": 0,
                                        "description": "messages deleted by this call, at most"
                                        " erase_limit",
                                    },
                                    "more": {
                                        "type": "boolean",
                                        "description": "the user has messages left there",
                                    },
                                },
                            },
                        ),
                        **_errors("400", "405", "413"),
                    },
                }
            },
            "/history": {
                "get": {
                    "summary": "A page of a conversation's stored messages",
                    "operationId": "history",
                    "parameters": [
                        _query("room", "a room (or with=)", _NAME),
                        _query("with", "two user ids, comma-separated: their DMs", _NAME),
                        _query("before", "messages before this seq (paging back)", _SEQ),
                        _query("after", "messages after this seq (paging forward)", _SEQ),
                        _query(
                            "limit",
                            "most messages, default 50, at most history_max_limit",
                            {"type": "integer", "minimum": 1},
                        ),
                    ],
                    "responses": {
                        **_ok(
                            "the page, oldest first",
                            {
                                "type": "object",
                                "required": ["messages", "more"],
                                "additionalProperties": False,
                                "properties": {
                                    "messages": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Message"},
                                    },
                                    "more": {"type": "boolean"},
                                },
                            },
                        ),
                        **_errors("400", "405"),
                    },
                }
            },
            "/revocations": {
                "post": {
                    "summary": "Revoke a token (jti) or a user's tokens, on every node",
                    "operationId": "revoke",
                    "requestBody": _body(
                        {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "required": ["jti"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "jti": _NAME,
                                        "expires_at": {"type": "number", "minimum": 0},
                                    },
                                },
                                {
                                    "type": "object",
                                    "required": ["user"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "user": _USER,
                                        "before": {"type": "number", "minimum": 0},
                                        "until": {"type": "number", "minimum": 0},
                                    },
                                },
                            ]
                        }
                    ),
                    "responses": {
                        **_ok(
                            "revoked; its connections are being closed with 4003",
                            {
                                "type": "object",
                                "required": ["revoked"],
                                "properties": {
                                    "revoked": {
                                        "type": "object",
                                        "properties": {
                                            "jti": {"type": "string"},
                                            "user": {"type": "string"},
                                        },
                                    }
                                },
                            },
                        ),
                        **_errors("400", "405", "413"),
                    },
                }
            },
            "/webhooks/dead": {
                "get": {
                    "summary": "List the webhook dead-letter queue, in id (about time) order",
                    "operationId": "deadWebhooks",
                    "parameters": [
                        _query(
                            "limit",
                            "most entries, default 100, at most 1000",
                            {"type": "integer", "minimum": 1, "maximum": 1000},
                        ),
                        _query("after", "the next of the previous page", _NAME),
                    ],
                    "responses": {
                        **_ok(
                            "a page of dead entries",
                            {
                                "type": "object",
                                "required": ["dead", "next"],
                                "additionalProperties": False,
                                "properties": {
                                    "dead": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/DeadWebhook"},
                                    },
                                    "next": {
                                        "type": ["string", "null"],
                                        "description": "after= of the next page; null: no more",
                                    },
                                },
                            },
                        ),
                        **_errors("400", "405"),
                    },
                }
            },
            "/webhooks/dead/{id}/retry": {
                "post": {
                    "summary": "Send a dead webhook event back to the outbox, due now",
                    "operationId": "retryDeadWebhook",
                    "parameters": [dead_path],
                    "requestBody": _NO_BODY,
                    "responses": {
                        **_ok(
                            "back in the outbox, its attempts counted afresh",
                            {
                                "type": "object",
                                "required": ["retried"],
                                "additionalProperties": False,
                                "properties": {"retried": {"type": "string"}},
                            },
                        ),
                        **_errors("400", "405", "413"),
                    },
                }
            },
            "/webhooks/dead/{id}": {
                "delete": {
                    "summary": "Delete a dead webhook event",
                    "operationId": "deleteDeadWebhook",
                    "parameters": [dead_path],
                    "responses": {
                        **_ok(
                            "deleted",
                            {
                                "type": "object",
                                "required": ["deleted"],
                                "additionalProperties": False,
                                "properties": {"deleted": {"type": "string"}},
                            },
                        ),
                        **_errors("400", "405"),
                    },
                }
            },
            **_moderation_paths(),
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {**_ok("OpenAPI 3.1", {"type": "object"}), **_errors("405")},
                }
            },
        },
    }


def _moderation_paths() -> dict[str, Any]:
    """``/rooms/{room}/roles/{user}``, ``/rooms/{room}/moderation``, ``/rooms/{room}/audit``."""
    room = {
        "name": "room",
        "in": "path",
        "required": True,
        "description": "a room name",
        "schema": _NAME,
    }
    user = {"name": "user", "in": "path", "required": True, "description": "a user id"}
    entry = {"$ref": "#/components/schemas/AuditEntry"}
    return {
        "/rooms/{room}/roles/{user}": {
            "get": {
                "summary": "A user's role in a room, and any ban or mute in force",
                "operationId": "getStanding",
                "parameters": [room, {**user, "schema": _USER}],
                "responses": {**_ok("the standing", _STANDING), **_errors("400", "405")},
            },
            "put": {
                "summary": "Set a user's role in a room (owner, moderator, member)",
                "operationId": "setRole",
                "parameters": [room, {**user, "schema": _USER}],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["role"],
                        "additionalProperties": False,
                        "properties": {
                            "role": _ROLE,
                            "by": {**_USER, "description": "who the audit log names"},
                        },
                    }
                ),
                "responses": {**_ok("the audit entry", entry), **_errors("400", "405", "413")},
            },
        },
        "/rooms/{room}/moderation": {
            "post": {
                "summary": "Kick, ban, unban, mute or unmute a user, or delete a message",
                "operationId": "moderate",
                "parameters": [room],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["action"],
                        "additionalProperties": False,
                        "properties": {
                            "action": {
                                "type": "string",
                                "enum": ["kick", "ban", "unban", "mute", "unmute", "delete"],
                            },
                            "user": {**_USER, "description": "whom (every action but delete)"},
                            "mid": {"type": "string", "description": "delete: the message"},
                            "by": {**_USER, "description": "who the audit log and user see"},
                            "reason": {"type": "string", "maxLength": 1000},
                            "for": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "description": "ban, mute: seconds until it ends (none: never)",
                            },
                        },
                    }
                ),
                "responses": {
                    **_ok("the audit entry", entry),
                    **_errors("400", "405", "413"),
                },
            }
        },
        "/rooms/{room}/audit": {
            "get": {
                "summary": "A page of a room's moderation audit log, newest first",
                "operationId": "audit",
                "parameters": [
                    room,
                    _query("before", "the next of the previous page", {"type": "string"}),
                    _query("limit", "1 to audit_page_max (default)", {"type": "integer"}),
                ],
                "responses": {
                    **_ok(
                        "the page",
                        {
                            "type": "object",
                            "required": ["entries", "next"],
                            "additionalProperties": False,
                            "properties": {
                                "entries": {"type": "array", "items": entry},
                                "next": {"type": ["string", "null"]},
                            },
                        },
                    ),
                    **_errors("400", "405"),
                },
            }
        },
    }
