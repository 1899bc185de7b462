"""The Python client of actorim: a session that survives server restarts, on gevent.

Example::

    from actorim.client import Client

    with Client("ws://localhost:8080/ws", token) as client:
        client.join("lobby")
        client.send(room="lobby", body="hello")
        for event in client.events(timeout=10):
            print(event)

See docs/clients.md for the whole API.
"""

from actorim.client._client import (
    DEFAULT_POLICY,
    DEFAULT_REQUEST_TIMEOUT_S,
    SERVER_RETRY_BACKOFF,
    Client,
    SendResult,
    Token,
)
from actorim.client._errors import (
    AuthError,
    ClientClosed,
    ClientError,
    ConnectRefused,
    LinkLost,
    NotConnected,
    QueueFull,
    Replaced,
    RequestTimeout,
    ServerError,
)
from actorim.client._events import MAX_BUFFERED_EVENTS
from actorim.client._state import MAX_PENDING, MAX_RECENT_MIDS
from actorim.client._status import LinkState, StateChange
from actorim.client._unread import Counts, UnreadTracker

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "MAX_BUFFERED_EVENTS",
    "MAX_PENDING",
    "MAX_RECENT_MIDS",
    "SERVER_RETRY_BACKOFF",
    "AuthError",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectRefused",
    "Counts",
    "LinkLost",
    "LinkState",
    "NotConnected",
    "QueueFull",
    "Replaced",
    "RequestTimeout",
    "SendResult",
    "ServerError",
    "StateChange",
    "Token",
    "UnreadTracker",
]
