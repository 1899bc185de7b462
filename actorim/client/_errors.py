"""What the client raises. Every error has a ``code``: the server's error code for a refused
command (docs/protocol.md), or one of the client's own: ``timeout``, ``not_connected``,
``closed``, ``unauthenticated``, ``queue_full``, ``link_lost``, ``replaced``;
:class:`ConnectRefused` carries the server's code (``forbidden``)."""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ClientClosed",
    "ClientError",
    "ConnectRefused",
    "LinkLost",
    "NotConnected",
    "QueueFull",
    "Replaced",
    "RequestTimeout",
    "ServerError",
]


class ClientError(Exception):
    """Base of the client's errors; ``code`` says which, ``str()`` says what to do."""

    code: str = "client_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ServerError(ClientError):
    """The server refused the command; ``code`` is its error code (``forbidden``,
    ``not_found``, ``bad_request``, ...) and the message is the server's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}", code=code)
        self.server_message = message


class RequestTimeout(ClientError):
    """No answer in time. For a send, ``cid`` is the id to resend with: the server never stores
    one ``cid`` twice, so a resend cannot double the message."""

    code = "timeout"

    def __init__(self, message: str, *, cid: str | None = None) -> None:
        super().__init__(message)
        self.cid = cid


class NotConnected(ClientError):
    """The link is down and the client was told not to wait for it (``wait_for_reconnect=False``),
    or ``connect()`` was never called."""

    code = "not_connected"


class ClientClosed(ClientError):
    """The client is closed for good: by the application, or because the server refused it."""

    code = "closed"


class AuthError(ClientClosed):
    """The server refused the token and a fresh one cannot be had (a fixed token was given):
    get a new token and make a new client."""

    code = "unauthenticated"


class Replaced(ClientClosed):
    """The server closed the connection for a newer one of the same user, who opened more than
    its ``max_connections_per_user`` at once (close 4009): the connection heard from least
    recently makes room. The client stops rather than come back and replace another in turn;
    make a new client to connect again."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the server replaced this connection with a newer one of the same user ({reason}); "
            "make a new client to connect again",
            code="replaced",
        )


class ConnectRefused(ClientClosed):
    """The server refused the connection for a reason that trying again cannot fix: ``code`` is
    its error code (``forbidden``: a server older than the one that replaces the user's least
    recently heard connection instead, refusing a user past ``max_connections_per_user``).
    Close another connection of the user, then make a new client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(
            f"the server refused the connection ({code}: {message}); close another connection "
            "of this user (or raise the server's max_connections_per_user), then make a new "
            "client",
            code=code,
        )
        self.server_message = message


class QueueFull(ClientError):
    """Too many commands wait for an answer (see ``MAX_PENDING``): the link has been down long,
    or the application sends faster than the server answers."""

    code = "queue_full"


class LinkLost(ClientError):
    """The WebSocket ended under a command tied to it (``connect``, a re-join, a heartbeat).
    Commands of the application are resent on the next link instead."""

    code = "link_lost"
