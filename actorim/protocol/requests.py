"""The checks of an application's requests (the server API, ``Node``, the ``Publisher``): the
WebSocket commands' own checks (``decode_command``), so that a room name, a user id, a title or
a body the protocol refuses is refused from Python and HTTP in the same words, raised as
``InvalidRequest`` before anything changes.

>>> room_name("lobby")
'lobby'
>>> try:
...     user_id("no spaces", "user")
... except InvalidRequest as exc:
...     print(exc.message)
user must be 1-128 characters of A-Z a-z 0-9 _ . : @ -
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actorim.domain.auth import valid_user_id
from actorim.protocol import commands as cmd
from actorim.protocol.errors import CommandError

__all__ = [
    "InvalidRequest",
    "decoded",
    "flag",
    "member_list",
    "one_place",
    "room_name",
    "room_text",
    "user_id",
]


class InvalidRequest(ValueError):
    """An operation's arguments are wrong; ``message`` says which and how. Nothing changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def decoded(frame: dict[str, Any], max_limit: int = cmd.DEFAULT_MAX_LIMIT) -> Any:
    """``frame`` (a command without its id) decoded as the WebSocket decodes it."""
    try:
        return cmd.decode_command({"id": 0, **frame}, max_limit=max_limit)
    except CommandError as exc:
        raise InvalidRequest(exc.message) from None


def user_id(user: object, field: str) -> str:
    """``user`` once it is a user id; ``field`` names it in the error."""
    if not valid_user_id(user):
        raise InvalidRequest(f"{field} must be 1-128 characters of A-Z a-z 0-9 _ . : @ -")
    return str(user)


def room_name(room: object) -> str:
    """``room`` once it is a room name (``join``'s rule)."""
    command: cmd.Join = decoded({"t": "join", "room": room})
    return command.room


def room_text(title: object, topic: object) -> None:
    """Check a title and a topic as ``room.update`` checks them (None: not given)."""
    frame: dict[str, Any] = {"t": "room.update", "room": "x"}
    frame["title"] = "" if title is None else title
    if topic is not None:
        frame["topic"] = topic
    decoded(frame)


def flag(value: object, field: str) -> bool:
    """``value`` once it is a boolean."""
    if type(value) is not bool:
        raise InvalidRequest(f"{field} must be true or false")
    return value


def member_list(members: object, limit: int) -> list[str]:
    """``members`` (a list or tuple of at most ``limit`` user ids) without repeats, in order."""
    if not isinstance(members, list | tuple) or len(members) > limit:
        raise InvalidRequest(f"members must be a list of at most {limit} user ids")
    users: Sequence[object] = members
    return list(dict.fromkeys(user_id(user, "members[]") for user in users))


def one_place(user: str, room: object, with_: object) -> None:
    """Check where an erase of ``user``'s messages looks: at most one of a room and another
    user (neither: everywhere)."""
    user_id(user, "user")
    if room is not None and with_ is not None:
        raise InvalidRequest("give at most one of room and with")
    if room is not None:
        room_name(room)
    if with_ is not None:
        user_id(with_, "with")
