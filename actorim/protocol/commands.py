"""Commands from decoded frames, and the replies and events sent back.

A command frame is a map `{"t": <name>, "id": <int>, ...arguments}`. `decode_command` turns
one into a frozen value object or raises `CommandError` with `ErrorCode.BAD_REQUEST` and a
message naming the field at fault, which the server sends as the error reply for that `id`.
A frame that is not a map or has no integer `id` cannot be answered by a reply; for those it
raises `NotACommand`, which the server answers with an `error` event.

Keys the schema does not name are ignored (a `from` written by the client among them). An
optional argument sent as `null` counts as absent, as JSON clients often write it.

>>> decode_command({"t": "join", "id": 3, "room": "lobby"})
Join(id=3, room='lobby', since=None, epoch=None)
>>> reply_ok(3, {"seq": 12})
{'t': 'reply', 'id': 3, 'ok': True, 'data': {'seq': 12}}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias, cast

from actorim.domain.messages import MAX_REACTION_KEY_BYTES
from actorim.domain.rooms import MAX_QUERY_LENGTH, MAX_TITLE_LENGTH, MAX_TOPIC_LENGTH
from actorim.protocol.errors import CommandError, ErrorCode, error_payload

__all__ = [
    "COMMAND_NAMES",
    "CRASH_TARGETS",
    "DEFAULT_KIND",
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_LIMIT",
    "MAX_CID_LENGTH",
    "MAX_CURSOR_LENGTH",
    "MAX_EPOCH_LENGTH",
    "MAX_KIND_LENGTH",
    "MAX_MID_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_PAGE_LIMIT",
    "MAX_SEQ",
    "MAX_SINCE_ROOMS",
    "MAX_TOKEN_LENGTH",
    "MAX_USERS",
    "Ack",
    "Command",
    "Connect",
    "Conversations",
    "CrashTarget",
    "DebugCrash",
    "Delete",
    "Edit",
    "History",
    "Join",
    "Leave",
    "Members",
    "NotACommand",
    "Ping",
    "Presence",
    "React",
    "Read",
    "Refresh",
    "RoomUpdate",
    "Rooms",
    "Send",
    "Thread",
    "Typing",
    "Unread",
    "Unwatch",
    "Watch",
    "decode_command",
    "error_event",
    "reply_error",
    "reply_ok",
]

MAX_NAME_LENGTH: Final = 128
"""Room names and user ids: 1 to this many characters of `[A-Za-z0-9_.:@-]`.

Long enough for an e-mail address or a namespaced name (`team:support@eu`), short enough to
sit in every log line and metric label.
"""

MAX_TOKEN_LENGTH: Final = 4096
"""Longest `connect` token: a signed JWT with generous claims stays well under it."""

MAX_CID_LENGTH: Final = 64
"""Longest client message id (`cid`): room for a UUID or a ULID with a prefix."""

MAX_MID_LENGTH: Final = 64
"""Longest server message id (`mid`) a client may quote back (`ack`, `read`, `reply_to`)."""

MAX_KIND_LENGTH: Final = 32
"""Longest message `kind` ("text", "image", "typing", ...)."""

MAX_EPOCH_LENGTH: Final = 64
"""Longest room `epoch` a client may quote back in `join`; the server issues shorter ones."""

MAX_USERS: Final = 1000
"""Most user ids in one `presence`, `watch` or `unwatch`: bounds the work one frame asks for."""

DEFAULT_MAX_LIMIT: Final = 100
"""Default bound of `history.limit` (the `history_max_limit` setting)."""

DEFAULT_LIMIT: Final = 50
"""`history.limit` when the client gives none (or `max_limit`, if that is lower)."""

MAX_SEQ: Final = 2**63 - 1

# Rooms a `connect` may name in `since`: as many as a user may belong to by default.
MAX_SINCE_ROOMS: Final = 1000

# A page cursor handed out by the server (conversations, members, rooms), sent back as is.
MAX_CURSOR_LENGTH: Final = 300

# The largest `limit` a page command accepts; the server cuts it to its own setting.
MAX_PAGE_LIMIT: Final = 10_000
"""Largest `seq` cursor (`since`, `before`, `after`): stores keep seqs as signed 64-bit
integers (SQLite INTEGER, Redis stream ids), so no message can lie beyond it."""

DEFAULT_KIND: Final = "text"
"""The `kind` of a `send` that names none."""

CrashTarget: TypeAlias = Literal["connection", "room", "presence", "store"]
CRASH_TARGETS: Final[frozenset[str]] = frozenset(("connection", "room", "presence", "store"))
"""What `debug.crash` may crash, to watch the supervisors restart it."""

_NAME_RE = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{MAX_NAME_LENGTH}}}")
_NAME_CHARS_TEXT = "letters, digits and _ . : @ -"
_QUOTE_AT_MOST = 40  # characters of a client's value quoted back in an error message


class NotACommand(CommandError):
    """The frame is not a map with an integer `id`: there is no id to reply to."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True, slots=True)
class Connect:
    """Authenticate the connection with a token. `since` maps rooms to the last seq the client
    saw in them: the connection's subscription to each resumes from there."""

    t: ClassVar[str] = "connect"
    id: int
    token: str
    since: tuple[tuple[str, int], ...] = ()
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Join a room; `since` asks for the messages after that sequence number of `epoch`."""

    t: ClassVar[str] = "join"
    id: int
    room: str
    since: int | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave a room."""

    t: ClassVar[str] = "leave"
    id: int
    room: str


@dataclass(frozen=True, slots=True)
class Send:
    """Send `body` to a room or to one user; exactly one of `room` and `to` is set.

    `reply_to` makes it a reply to that message of the same conversation, in its thread.
    """

    t: ClassVar[str] = "send"
    id: int
    body: Any
    room: str | None = None
    to: str | None = None
    kind: str = DEFAULT_KIND
    cid: str | None = None
    reply_to: str | None = None
    mentions: tuple[str, ...] = ()
    """Users the message mentions besides those its text names as ``@user``."""


@dataclass(frozen=True, slots=True)
class Typing:
    """The user is typing in a room or to one user; exactly one of `room` and `to` is set.

    Ephemeral: relayed to the conversation's other connections, never stored.
    """

    t: ClassVar[str] = "typing"
    id: int
    room: str | None = None
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """Ask for the current presence of some users."""

    t: ClassVar[str] = "presence"
    id: int
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Watch:
    """Subscribe to presence changes of some users."""

    t: ClassVar[str] = "watch"
    id: int
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unwatch:
    """Stop the presence changes of some users."""

    t: ClassVar[str] = "unwatch"
    id: int
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """Round trip to measure latency or keep a connection alive."""

    t: ClassVar[str] = "ping"
    id: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The client received message `mid`."""

    t: ClassVar[str] = "ack"
    id: int
    mid: str


@dataclass(frozen=True, slots=True)
class Read:
    """Either a receipt, the user read direct message `mid`, or a read marker: the user read a
    room or the direct conversation `with_` up to `seq`. Exactly one of `mid`, `room` and
    `with_` is set, and `seq` with `room` or `with_`."""

    t: ClassVar[str] = "read"
    id: int
    mid: str | None = None
    room: str | None = None
    with_: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Unread:
    """Ask for the user's read marker, unread and mention counts in some rooms and direct
    conversations (`with_`: the other users; `with` on the wire)."""

    t: ClassVar[str] = "unread"
    id: int
    rooms: tuple[str, ...] = ()
    with_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class History:
    """Page through stored messages of a room or of the direct conversation `with_` a user.

    Exactly one of `room` and `with_` (`with` on the wire) is set. `limit` is `DEFAULT_LIMIT`
    (or the decoder's `max_limit`, if lower) when the client gives none.
    """

    t: ClassVar[str] = "history"
    id: int
    room: str | None = None
    with_: str | None = None
    before: int | None = None
    after: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class Thread:
    """Page through the replies of the thread whose root is message `mid`, as `history` pages
    a conversation (the same cursors and `limit`)."""

    t: ClassVar[str] = "thread"
    id: int
    mid: str
    before: int | None = None
    after: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class Refresh:
    """Replace the connection's token with a fresh one of the same user."""

    t: ClassVar[str] = "refresh"
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class DebugCrash:
    """Crash an actor on purpose, to show a supervisor restarting it (development only)."""

    t: ClassVar[str] = "debug.crash"
    id: int
    what: CrashTarget
    room: str | None = None


# -- changes to stored messages: edit and delete ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the body of message `mid` (the author's own, within the edit window).

    `cid` makes a resend safe, as for `send`: the same `cid` from the same user in the same
    conversation is one edit.
    """

    t: ClassVar[str] = "edit"
    id: int
    mid: str
    body: Any
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete message `mid` (the author's own): its body is erased, a tombstone stays."""

    t: ClassVar[str] = "delete"
    id: int
    mid: str
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class React:
    """Add (`on` true) or remove (`on` false) the user's reaction `key` on message `mid`.

    Any member of the conversation may react. `key` is a non-empty string of at most
    MAX_REACTION_KEY_BYTES bytes in UTF-8 (an emoji, or a short name). Reacting twice changes
    nothing, and `cid` makes a resend safe as for `send`.
    """

    t: ClassVar[str] = "react"
    id: int
    mid: str
    key: str
    on: bool
    cid: str | None = None


def _react(frame: dict[Any, Any], id: int, max_limit: int) -> React:
    key = frame.get("key")
    if type(key) is not str or not 0 < len(key.encode("utf-8", "surrogatepass")) <= (
        MAX_REACTION_KEY_BYTES
    ):
        raise _bad(
            f"field 'key' must be a non-empty string of at most {MAX_REACTION_KEY_BYTES} bytes"
            " in UTF-8"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise _bad("field 'key' must be valid Unicode text") from None
    on = frame.get("on")
    if type(on) is not bool:
        raise _bad("field 'on' must be true (add the reaction) or false (remove it)")
    return React(
        id,
        _text(frame, "mid", MAX_MID_LENGTH),
        key,
        on,
        cid=_optional_text(frame, "cid", MAX_CID_LENGTH),
    )


def _edit(frame: dict[Any, Any], id: int, max_limit: int) -> Edit:
    if "body" not in frame:
        raise _bad("field 'body' is required")
    return Edit(
        id,
        _text(frame, "mid", MAX_MID_LENGTH),
        frame["body"],
        cid=_optional_text(frame, "cid", MAX_CID_LENGTH),
    )


def _delete(frame: dict[Any, Any], id: int, max_limit: int) -> Delete:
    return Delete(
        id, _text(frame, "mid", MAX_MID_LENGTH), cid=_optional_text(frame, "cid", MAX_CID_LENGTH)
    )


@dataclass(frozen=True, slots=True)
class Conversations:
    """Page the user's conversations (the inbox) after the cursor `before`."""

    t: ClassVar[str] = "conversations"
    id: int
    before: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Members:
    """Page a room's lasting members, with their presence, after `cursor`."""

    t: ClassVar[str] = "members"
    id: int
    room: str
    cursor: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class RoomUpdate:
    """Set a room's title and/or topic (at least one; an empty string clears it)."""

    t: ClassVar[str] = "room.update"
    id: int
    room: str
    title: str | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Rooms:
    """Page the directory of public rooms, those whose name or title contains `query`."""

    t: ClassVar[str] = "rooms"
    id: int
    query: str | None = None
    cursor: str | None = None
    limit: int | None = None


MODERATION_ACTIONS: Final = ("kick", "ban", "unban", "mute", "unmute", "delete")
"""The actions of `moderate` (the same as `actorim.domain.moderation.ACTIONS`)."""

MAX_REASON_LENGTH: Final = 1000
"""Longest `reason` the protocol carries; the `moderation_reason_max` setting may cut lower."""

MAX_DURATION_S: Final = 10 * 365 * 24 * 3600
"""Longest ban or mute with an expiry, in seconds (ten years); leave `for` out for none."""


@dataclass(frozen=True, slots=True)
class Moderate:
    """A moderator acts in `room`: kick, ban, unban, mute or unmute `user`, or delete the
    message `mid`; `reason` is kept in the audit log and shown to the user, `for_s` (the
    field `for`, seconds) bounds a ban or mute."""

    t: ClassVar[str] = "moderate"
    id: int
    room: str
    action: str
    user: str | None = None
    mid: str | None = None
    reason: str = ""
    for_s: float | None = None


def moderation_fields(
    action: Any, user: Any, mid: Any, reason: Any, for_s: Any
) -> tuple[str, str | None, str | None, str, float | None]:
    """The fields of a moderation action checked (``moderate``, and the server API's and
    ``Node``'s equivalent): ``user`` for every action but ``delete``, which takes ``mid``;
    ``for`` only for ``ban`` and ``mute``. A CommandError (bad_request) names the first at
    fault."""
    if action not in MODERATION_ACTIONS:
        raise _bad(f"field 'action' must be one of {', '.join(MODERATION_ACTIONS)}")
    if action == "delete":
        if mid is None or user is not None:
            raise _bad("action 'delete' takes the field 'mid' (the message), not 'user'")
        mid = _text_value(mid, "mid", MAX_MID_LENGTH)
    else:
        if user is None or mid is not None:
            raise _bad(f"action {action!r} takes the field 'user', not 'mid'")
        user = _name_value(user, "user")
    if reason is None:
        reason = ""
    if type(reason) is not str or len(reason) > MAX_REASON_LENGTH:
        raise _bad(f"field 'reason' must be a string of at most {MAX_REASON_LENGTH} characters")
    if for_s is not None:
        if action not in ("ban", "mute"):
            raise _bad("only 'ban' and 'mute' take the field 'for'")
        if type(for_s) not in (int, float) or not 0 < for_s <= MAX_DURATION_S:
            raise _bad(f"field 'for' must be a number of seconds above 0, at most {MAX_DURATION_S}")
    return action, user, mid, reason, None if for_s is None else float(for_s)


def _moderate(frame: dict[Any, Any], id: int, max_limit: int) -> Moderate:
    room = _name(frame, "room")
    action, user, mid, reason, for_s = moderation_fields(
        frame.get("action"),
        frame.get("user"),
        frame.get("mid"),
        frame.get("reason"),
        frame.get("for"),
    )
    return Moderate(id, room, action, user, mid, reason, for_s)


def _optional_page_limit(frame: dict[Any, Any]) -> int | None:
    """A membership page's `limit` (`conversations`, `members`, `rooms`): None when absent, the
    server's setting then decides."""
    limit = _optional(frame, "limit")
    if limit is _MISSING:
        return None
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise _bad(f"field 'limit' must be an integer from 1 to {MAX_PAGE_LIMIT}")
    return limit


def _optional_string(frame: dict[Any, Any], key: str, max_length: int) -> str | None:
    """An optional string that may be empty (a title or topic cleared)."""
    value = _optional(frame, key)
    if value is _MISSING:
        return None
    if type(value) is not str or len(value) > max_length:
        raise _bad(f"field '{key}' must be a string of at most {max_length} characters")
    return value


def _conversations(frame: dict[Any, Any], id: int, max_limit: int) -> Conversations:
    before = _optional_text(frame, "before", MAX_CURSOR_LENGTH)
    return Conversations(id, before=before, limit=_optional_page_limit(frame))


def _members(frame: dict[Any, Any], id: int, max_limit: int) -> Members:
    return Members(
        id,
        _name(frame, "room"),
        cursor=_optional_text(frame, "cursor", MAX_CURSOR_LENGTH),
        limit=_optional_page_limit(frame),
    )


def _room_update(frame: dict[Any, Any], id: int, max_limit: int) -> RoomUpdate:
    title = _optional_string(frame, "title", MAX_TITLE_LENGTH)
    topic = _optional_string(frame, "topic", MAX_TOPIC_LENGTH)
    if title is None and topic is None:
        raise _bad("give the field 'title', the field 'topic', or both")
    return RoomUpdate(id, _name(frame, "room"), title=title, topic=topic)


def _rooms(frame: dict[Any, Any], id: int, max_limit: int) -> Rooms:
    return Rooms(
        id,
        query=_optional_string(frame, "query", MAX_QUERY_LENGTH),
        cursor=_optional_text(frame, "cursor", MAX_CURSOR_LENGTH),
        limit=_optional_page_limit(frame),
    )


Command: TypeAlias = (
    Connect
    | Join
    | Leave
    | Send
    | Typing
    | Presence
    | Watch
    | Unwatch
    | Ping
    | Ack
    | Read
    | Unread
    | History
    | Thread
    | DebugCrash
    | Refresh
    | Edit
    | Delete
    | React
    | Conversations
    | Members
    | RoomUpdate
    | Rooms
    | Moderate
)


def decode_command(obj: Any, *, max_limit: int = DEFAULT_MAX_LIMIT) -> Command:
    """Validate a decoded frame into a command.

    Raises `NotACommand` when `obj` is not a map with an integer `id`, else `CommandError`
    (`BAD_REQUEST`) naming the first field at fault. `max_limit` bounds `history.limit`.

    >>> decode_command({"t": "send", "id": 1, "room": "lobby", "body": "hi", "from": "eve"})
    Send(id=1, body='hi', room='lobby', to=None, kind='text', cid=None, reply_to=None,
         mentions=())
    """
    if type(obj) is not dict:
        raise NotACommand(f"a command frame must be a map, not {_type_name(obj)}")
    command_id = obj.get("id")
    if type(command_id) is not int:
        raise NotACommand("a command frame needs an integer field 'id'")
    name = obj.get("t")
    if type(name) is not str:
        raise _bad("field 't' must be a string naming a command")
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise _bad(f"field 't' names no known command: {_quote(name)}")
    return decoder(obj, command_id, max_limit)


def reply_ok(id: int, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reply to command `id` that succeeded; `data` defaults to an empty map."""
    return {"t": "reply", "id": id, "ok": True, "data": {} if data is None else data}


def reply_error(id: int, code: ErrorCode, message: str) -> dict[str, Any]:
    """The reply to command `id` that failed with `code`."""
    return {"t": "reply", "id": id, "ok": False, "error": error_payload(code, message)}


def error_event(code: ErrorCode, message: str) -> dict[str, Any]:
    """The `error` event, for failures that have no command id to reply to."""
    return {"t": "error", "error": error_payload(code, message)}


# Field readers: each returns the validated value or raises a bad_request naming the field.

_MISSING: Final = object()


def _bad(message: str) -> CommandError:
    return CommandError(ErrorCode.BAD_REQUEST, message)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bytes):
        return "bytes"
    return f"a {type(value).__name__}"


def _quote(text: str) -> str:
    if len(text) > _QUOTE_AT_MOST:
        text = text[:_QUOTE_AT_MOST] + "..."
    return repr(text)


def _optional(frame: dict[Any, Any], key: str) -> Any:
    value = frame.get(key)
    return _MISSING if value is None else value


def _name_value(value: Any, field: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_NAME_LENGTH:
        raise _bad(
            f"field '{field}' must be a non-empty string of at most {MAX_NAME_LENGTH} characters"
        )
    if _NAME_RE.fullmatch(value) is None:
        raise _bad(f"field '{field}' may contain only {_NAME_CHARS_TEXT}")
    return value


def _name(frame: dict[Any, Any], key: str) -> str:
    if key not in frame:
        raise _bad(f"field '{key}' is required")
    return _name_value(frame[key], key)


def _optional_name(frame: dict[Any, Any], key: str) -> str | None:
    value = _optional(frame, key)
    return None if value is _MISSING else _name_value(value, key)


def _text_value(value: Any, field: str, max_length: int) -> str:
    if type(value) is not str or not 0 < len(value) <= max_length:
        raise _bad(f"field '{field}' must be a non-empty string of at most {max_length} characters")
    return value


def _text(frame: dict[Any, Any], key: str, max_length: int) -> str:
    if key not in frame:
        raise _bad(f"field '{key}' is required")
    return _text_value(frame[key], key, max_length)


def _optional_text(frame: dict[Any, Any], key: str, max_length: int) -> str | None:
    value = _optional(frame, key)
    return None if value is _MISSING else _text_value(value, key, max_length)


def _count_value(value: Any, field: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise _bad(f"field '{field}' must be an integer from 0 to {MAX_SEQ} (2^63 - 1)")
    return value


def _optional_count(frame: dict[Any, Any], key: str) -> int | None:
    value = _optional(frame, key)
    return None if value is _MISSING else _count_value(value, key)


def _users(frame: dict[Any, Any]) -> tuple[str, ...]:
    if "users" not in frame:
        raise _bad("field 'users' is required")
    return _names(frame, "users", "user ids")


def _names(frame: dict[Any, Any], key: str, what: str) -> tuple[str, ...]:
    """A list of at most MAX_USERS names (absent: none)."""
    names = _optional(frame, key)
    if names is _MISSING:
        return ()
    if type(names) is not list or len(names) > MAX_USERS:
        raise _bad(f"field '{key}' must be a list of at most {MAX_USERS} {what}")
    return tuple(_name_value(name, f"{key}[{index}]") for index, name in enumerate(names))


def _one_target(frame: dict[Any, Any], first: str, second: str) -> tuple[str | None, str | None]:
    has_first = _optional(frame, first) is not _MISSING
    if has_first == (_optional(frame, second) is not _MISSING):
        raise _bad(f"give exactly one of the fields '{first}' and '{second}'")
    if has_first:
        return _name(frame, first), None
    return None, _name(frame, second)


# One decoder per command name: (frame, id, max_limit) -> command.

_Decoder: TypeAlias = Callable[[dict[Any, Any], int, int], Command]


def _connect(frame: dict[Any, Any], id: int, max_limit: int) -> Connect:
    since = _optional(frame, "since")
    resumed: tuple[tuple[str, int], ...] = ()
    if since is not _MISSING:
        if type(since) is not dict or len(since) > MAX_SINCE_ROOMS:
            raise _bad(
                f"field 'since' must be a map of at most {MAX_SINCE_ROOMS} rooms to the last seq"
                " seen in each"
            )
        resumed = tuple(
            (_name_value(room, "since"), _count_value(seq, f"since[{room}]"))
            for room, seq in since.items()
        )
    epoch = _optional_text(frame, "epoch", MAX_EPOCH_LENGTH)
    return Connect(id, _text(frame, "token", MAX_TOKEN_LENGTH), since=resumed, epoch=epoch)


def _join(frame: dict[Any, Any], id: int, max_limit: int) -> Join:
    return Join(
        id,
        _name(frame, "room"),
        since=_optional_count(frame, "since"),
        epoch=_optional_text(frame, "epoch", MAX_EPOCH_LENGTH),
    )


def _leave(frame: dict[Any, Any], id: int, max_limit: int) -> Leave:
    return Leave(id, _name(frame, "room"))


def _send(frame: dict[Any, Any], id: int, max_limit: int) -> Send:
    room, to = _one_target(frame, "room", "to")
    if "body" not in frame:
        raise _bad("field 'body' is required")
    kind = _optional_text(frame, "kind", MAX_KIND_LENGTH)
    return Send(
        id,
        frame["body"],
        room=room,
        to=to,
        kind=DEFAULT_KIND if kind is None else kind,
        cid=_optional_text(frame, "cid", MAX_CID_LENGTH),
        reply_to=_optional_text(frame, "reply_to", MAX_MID_LENGTH),
        mentions=_names(frame, "mentions", "user ids"),
    )


def _typing(frame: dict[Any, Any], id: int, max_limit: int) -> Typing:
    room, to = _one_target(frame, "room", "to")
    return Typing(id, room=room, to=to)


def _presence(frame: dict[Any, Any], id: int, max_limit: int) -> Presence:
    return Presence(id, _users(frame))


def _watch(frame: dict[Any, Any], id: int, max_limit: int) -> Watch:
    return Watch(id, _users(frame))


def _unwatch(frame: dict[Any, Any], id: int, max_limit: int) -> Unwatch:
    return Unwatch(id, _users(frame))


def _ping(frame: dict[Any, Any], id: int, max_limit: int) -> Ping:
    return Ping(id)


def _ack(frame: dict[Any, Any], id: int, max_limit: int) -> Ack:
    return Ack(id, _text(frame, "mid", MAX_MID_LENGTH))


def _read(frame: dict[Any, Any], id: int, max_limit: int) -> Read:
    given = [key for key in ("mid", "room", "with") if _optional(frame, key) is not _MISSING]
    if given == ["mid"]:
        if _optional(frame, "seq") is not _MISSING:
            raise _bad("field 'seq' goes with 'room' or 'with' (a read marker), not with 'mid'")
        return Read(id, _text(frame, "mid", MAX_MID_LENGTH))
    if len(given) != 1:
        raise _bad(
            "give exactly one of the fields 'mid' (a read receipt of a direct message), 'room'"
            " and 'with' (with 'seq': a read marker)"
        )
    room, with_ = _one_target(frame, "room", "with")
    seq = _optional_count(frame, "seq")
    if seq is None:
        raise _bad(f"field 'seq' is required: an integer from 0 to {MAX_SEQ} (2^63 - 1)")
    return Read(id, room=room, with_=with_, seq=seq)


def _unread(frame: dict[Any, Any], id: int, max_limit: int) -> Unread:
    return Unread(id, _names(frame, "rooms", "room names"), _names(frame, "with", "user ids"))


def _page_limit(frame: dict[Any, Any], max_limit: int) -> int:
    """A page's `limit` (`history`, `thread`): `DEFAULT_LIMIT` (or `max_limit`, if lower)
    when absent."""
    limit = _optional(frame, "limit")
    if limit is _MISSING:
        return min(DEFAULT_LIMIT, max_limit)
    if type(limit) is not int or not 1 <= limit <= max_limit:
        raise _bad(f"field 'limit' must be an integer from 1 to {max_limit}")
    return limit


def _history(frame: dict[Any, Any], id: int, max_limit: int) -> History:
    room, with_ = _one_target(frame, "room", "with")
    return History(
        id,
        room=room,
        with_=with_,
        before=_optional_count(frame, "before"),
        after=_optional_count(frame, "after"),
        limit=_page_limit(frame, max_limit),
    )


def _thread(frame: dict[Any, Any], id: int, max_limit: int) -> Thread:
    return Thread(
        id,
        _text(frame, "mid", MAX_MID_LENGTH),
        before=_optional_count(frame, "before"),
        after=_optional_count(frame, "after"),
        limit=_page_limit(frame, max_limit),
    )


def _debug_crash(frame: dict[Any, Any], id: int, max_limit: int) -> DebugCrash:
    what = frame.get("what")
    if type(what) is not str or what not in CRASH_TARGETS:
        choices = ", ".join(f'"{target}"' for target in sorted(CRASH_TARGETS))
        raise _bad(f"field 'what' must be one of {choices}")
    # Checked against CRASH_TARGETS, the members of CrashTarget, just above.
    return DebugCrash(id, cast(CrashTarget, what), room=_optional_name(frame, "room"))


def _refresh(frame: dict[Any, Any], id: int, max_limit: int) -> Refresh:
    return Refresh(id, _text(frame, "token", MAX_TOKEN_LENGTH))


_DECODERS: Final[dict[str, _Decoder]] = {
    Connect.t: _connect,
    Join.t: _join,
    Leave.t: _leave,
    Send.t: _send,
    Typing.t: _typing,
    Presence.t: _presence,
    Watch.t: _watch,
    Unwatch.t: _unwatch,
    Ping.t: _ping,
    Ack.t: _ack,
    Read.t: _read,
    Unread.t: _unread,
    History.t: _history,
    Thread.t: _thread,
    DebugCrash.t: _debug_crash,
    Refresh.t: _refresh,
    Edit.t: _edit,
    Delete.t: _delete,
    React.t: _react,
    Conversations.t: _conversations,
    Members.t: _members,
    RoomUpdate.t: _room_update,
    Moderate.t: _moderate,
    Rooms.t: _rooms,
}

COMMAND_NAMES: Final[frozenset[str]] = frozenset(_DECODERS)
"""Every value of `t` a command may have."""
