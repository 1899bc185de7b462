"""Error codes a client can see, and the exception that carries one to the reply.

Every failure the server reports to a client names one of a closed set of codes, so clients
can branch on the code and show the message to a person. The message says what happened and
what to do; it never carries internal details (tracebacks, actor names, paths).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["CommandError", "ErrorCode", "error_payload"]


class ErrorCode(StrEnum):
    """The closed vocabulary of error codes, as written on the wire."""

    BAD_REQUEST = "bad_request"
    """The command is malformed: unknown `t`, a missing field or a field of the wrong shape."""
    UNAUTHENTICATED = "unauthenticated"
    """The command needs a successful `connect` first, or the token was refused."""
    FORBIDDEN = "forbidden"
    """The user is authenticated but may not do this."""
    NOT_FOUND = "not_found"
    """The room, user or message named does not exist."""
    TOO_MANY_REACTIONS = "too_many_reactions"
    """The message already carries `max_reactions` different reaction keys; a new one is
    refused (its existing keys can still be added and removed)."""
    TOO_MANY_ROOMS = "too_many_rooms"
    """The user already belongs to `max_rooms_per_user` rooms; a join of another is refused
    (leave one first)."""
    TOO_MANY_MENTIONS = "too_many_mentions"
    """A `send` listed more users in `mentions` than `max_mentions` allows."""
    BANNED = "banned"
    """The user is banned from the room: a `join`, and reading the room (`history`, `members`,
    `thread`), are refused until the ban ends or is lifted."""
    MUTED = "muted"
    """The user is muted in the room: they may read it but not send, edit or react there until
    the mute ends or is lifted."""
    NOT_MODERATOR = "not_moderator"
    """A `moderate` by a user who is neither a moderator nor the owner of the room."""
    OUTRANKED = "outranked"
    """A `moderate` against a user whose role is equal to or above the moderator's."""
    RATE_LIMITED = "rate_limited"
    """The client sends faster than its allowance; it should slow down and retry."""
    OVERLOADED = "overloaded"
    """The server sheds load; the client should retry later with back-off."""
    INTERNAL = "internal"
    """The server failed; the command may or may not have taken effect."""


class CommandError(Exception):
    """A command failed with a code the client can see.

    The command decoder raises it with `ErrorCode.BAD_REQUEST`; the server raises it with any
    other code and turns it into an error reply for the command's id.

    >>> err = CommandError(ErrorCode.NOT_FOUND, "room 'lobby' does not exist")
    >>> err.payload()
    {'code': 'not_found', 'message': "room 'lobby' does not exist"}
    """

    code: ErrorCode
    message: str

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def payload(self) -> dict[str, Any]:
        """The `error` map of a reply or an `error` event."""
        return error_payload(self.code, self.message)


def error_payload(code: ErrorCode, message: str) -> dict[str, Any]:
    """The `error` map written on the wire: `{"code": ..., "message": ...}`."""
    return {"code": code.value, "message": message}
