"""``Client``: the public API of a session with an actorim server that survives its restarts.

Each method is one protocol command (docs/protocol.md) that blocks the calling greenlet until
the answer. While the link is down a command waits for it (up to its timeout) and is sent when
the link is back; the :class:`~actorim.client._keeper.LinkKeeper` keeps the link up and
restores the session on every new one.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import gevent

from actorim.breaker.machine import BreakerPolicy
from actorim.client._errors import (
    ClientClosed,
    ClientError,
    NotConnected,
    RequestTimeout,
    ServerError,
)
from actorim.client._events import Dispatcher, EventBuffer, EventCallback, StateCallback
from actorim.client._keeper import LinkKeeper, Token, Tokens
from actorim.client._link import DEFAULT_MAX_SIZE, WebSocketLink
from actorim.client._state import OnLoss, Session
from actorim.client._status import LinkState
from supervisors import Backoff

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "SERVER_RETRY_BACKOFF",
    "Client",
    "SendResult",
    "Token",
]

logger = logging.getLogger("actorim.client")

DEFAULT_POLICY = BreakerPolicy(
    failure_threshold=6,
    cooldown=10.0,
    cooldown_cap=60.0,
    backoff=Backoff(floor=0.25, cap=8.0),
    heartbeat_interval=10.0,
    heartbeat_timeout=5.0,
    missed_heartbeats=2,
    restart_grace=30.0,
)
"""The client's link policy. A link that fails without warning is retried five times over up
to ~9 s (0.25 s + jitter, doubling); then the circuit opens for 10 s plus jitter that grows to
a minute, so a server that stays down sees about one attempt a minute per client. A server that
says it is restarting (close 1012 while it drains) first waits the delay the close hints, then
gets 30 s of attempts on the same back-off (at most 8 s apart) that do not count toward opening
the circuit: a drain of 5 s
(``drain_seconds``) and a restart of the process fit with room to spare.
A server that stops answering (even over a TCP connection that stays up) is noticed within
``2 * 10 + 5 = 25`` s; each attempt, token fetch and session restore included, has 5 s."""

DEFAULT_REQUEST_TIMEOUT_S = 30.0
"""How long a command waits for its answer, reconnects included, before ``RequestTimeout``."""

SERVER_RETRY_BACKOFF = Backoff(floor=0.2, cap=2.0)
"""Pauses before a command is sent again when the server answers that it is busy or failed
(``overloaded``, ``internal``, ``rate_limited``): ``0.2 + random(0, min(2, 0.2 * 2**n))`` s
before the n-th retry, for as long as the command's timeout allows. Safe, since every command
the client retries is idempotent (a send keeps its ``cid``). A store that pauses for seconds (a
Redis failover, the server's ``store_max_pending`` reached) is ridden out by a caller that gave
the time; the 2 s cap keeps the first try after it ends within about 2 s, and the jitter keeps
the clients that were refused together from coming back together."""

_RETRYABLE_CODES = frozenset({"overloaded", "internal", "rate_limited"})


@dataclass(frozen=True, slots=True)
class SendResult:
    """A stored message: its id, its place in the room or conversation, its time (ms); for a
    reply, ``thread``: the mid of its thread's root."""

    mid: str
    seq: int
    ts: int
    cid: str
    thread: str | None = None


class Client:
    """A connection to an actorim server that reconnects by itself; see docs/clients.md.

    ``url`` is the server's WebSocket endpoint (``ws://host:port/ws`` or ``wss://...``);
    ``token`` is a token or a callable returning a fresh one. Options:

    * ``policy`` (default :data:`DEFAULT_POLICY`): back-off, circuit breaker and heartbeats.
    * ``request_timeout`` (default 30 s): how long a command waits for its answer, reconnects
      included, unless the call gives its own ``timeout``.
    * ``wait_for_reconnect`` (default True): a command made while the link is down waits for
      it (up to its timeout). False: it fails at once with :class:`NotConnected`.
    * ``auto_ack`` (default True): acknowledge every direct message as it arrives, so the
      server stops holding it for offline delivery and the sender gets a receipt.
    * ``buffer_events`` (default True): keep events for :meth:`events` (up to 10,000). Turn it
      off when only callbacks are used.
    * ``json_frames`` (default False): speak JSON instead of MessagePack.
    * ``clock``, ``rand``: the breaker's time source, and the jitter of its back-off and of the
      retries of busy commands (:data:`SERVER_RETRY_BACKOFF`), for tests.

    Example::

        client = Client("ws://localhost:8080/ws", token)
        client.connect()
        client.join("lobby")
        client.on("msg", lambda m: print(m["from"], m["body"]))
        client.send(room="lobby", body="hello")
        client.close()
    """

    def __init__(
        self,
        url: str,
        token: Token,
        *,
        policy: BreakerPolicy = DEFAULT_POLICY,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        wait_for_reconnect: bool = True,
        auto_ack: bool = True,
        buffer_events: bool = True,
        json_frames: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        ssl_context: Any = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout!r}")
        self.url = url
        self._request_timeout = request_timeout
        self._wait_for_reconnect = wait_for_reconnect
        self._rand = rand
        self._session = Session(auto_ack=auto_ack)
        self._buffer = EventBuffer() if buffer_events else None
        self._dispatch = Dispatcher(self._buffer)

        def open_link(url: str, timeout: float) -> WebSocketLink:
            return WebSocketLink.open(
                url, timeout=timeout, json=json_frames, max_size=max_size, ssl_context=ssl_context
            )

        self._keeper = LinkKeeper(
            url,
            Tokens(token),
            self._session,
            self._dispatch,
            policy=policy,
            open_link=open_link,
            clock=clock,
            rand=rand,
        )

    def __repr__(self) -> str:
        return f"<Client {self.url} {self.state.value} user={self.user!r}>"

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._keeper.state

    @property
    def user(self) -> str | None:
        """The user the server authenticated (None before the first connect)."""
        return self._session.user

    @property
    def session(self) -> str | None:
        """The server's id for the current connection."""
        return self._keeper.info.get("session")

    @property
    def rooms(self) -> tuple[str, ...]:
        """The rooms joined (re-joined after every reconnect)."""
        return tuple(self._session.rooms)

    @property
    def conversations(self) -> list[dict[str, Any]]:
        """The inbox of the last ``connect``: the user's rooms and direct conversations, latest
        activity first (``{room, title, topic, seq, last?}`` or ``{with, seq, last?}``). Its
        rooms are joined: the server subscribed the link to them. More: ``more_conversations``
        from ``info["conversations_cursor"]``."""
        return list(self._keeper.info.get("conversations", []))

    def last_seq(self, room: str) -> int | None:
        """The last seq seen in ``room``: where the next reconnect resumes."""
        state = self._session.rooms.get(room)
        return None if state is None else state.seq

    def wait_for(self, state: LinkState, timeout: float | None = None) -> bool:
        """Wait until the link is in ``state``; False after ``timeout`` seconds, or at once when
        the client is closed and ``state`` is another one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._keeper.wait_for(state, deadline)

    # -- events --------------------------------------------------------------------------------

    def on(self, event_type: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of ``event_type`` (``msg``, ``member``,
        ``presence``, ``receipt``, ``rejoined``, ``gap``, ``error``; ``"*"`` for all). Returns a
        function that unsubscribes. Callbacks run one at a time in the client's dispatch
        greenlet and may call the client."""
        return self._dispatch.on(event_type, callback)

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(change)`` with every :class:`StateChange` of the link."""
        return self._dispatch.on_state(callback)

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Iterate over incoming events, oldest first (those that arrived before the loop
        started included). Ends when none arrives within ``timeout`` seconds, or when the client
        is closed and every event was read."""
        if self._buffer is None:
            raise ClientError("this client was made with buffer_events=False: use on()")
        while True:
            event = self._buffer.get(timeout)
            if event is None:
                return
            yield event

    # -- life cycle ----------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Start the link (once) and wait until it is CONNECTED; returns the server's
        ``connect`` reply (``user``, ``session``, ``node``, ``heartbeat``).

        Raises :class:`AuthError` if the server refuses the token for good,
        :class:`ConnectRefused` at once if it refuses the connection for good (``forbidden``:
        the user holds too many connections), and :class:`RequestTimeout` if the link is not up
        within ``timeout`` (default ``request_timeout``); the client keeps trying in the
        background.
        """
        keeper = self._keeper
        if keeper.closed is not None:
            raise keeper.closed
        keeper.start()
        limit = self._request_timeout if timeout is None else timeout
        if not self.wait_for(LinkState.CONNECTED, limit):
            if keeper.closed is not None:
                raise keeper.closed
            raise RequestTimeout(
                f"not connected to {self.url} within {limit:g}s (the link is {self.state.value}: "
                f"{keeper.reason}); the client keeps trying"
            )
        return dict(keeper.info)

    def close(self) -> None:
        """Close the link for good: waiting commands fail with :class:`ClientClosed`, the
        :meth:`events` iterators end once drained, and the state becomes DISCONNECTED."""
        self._keeper.shutdown(ClientClosed("the client was closed"))

    # -- commands ------------------------------------------------------------------------------

    def join(self, room: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Join ``room``; returns ``{room, seq, epoch, members}``. The room is re-joined after
        every reconnect, resuming after the last message seen."""
        self._session.joining(room)
        try:
            return self._request("join", {"room": room}, timeout=timeout)
        except ClientError:
            state = self._session.rooms.get(room)
            if state is not None and not state.joined:
                self._session.leaving(room)
            raise

    def leave(self, room: str, *, timeout: float | None = None) -> None:
        """Leave ``room``. While the link is down this returns at once: the room is not
        re-joined, and the server is told when the link is back in case a re-join was already
        on its way."""
        was_joined = self._session.leaving(room)
        keeper = self._keeper
        if was_joined and not keeper.ready and keeper.closed is None and keeper.started:
            keeper.background("leave", {"room": room}, OnLoss.DONE)
            return
        self._request("leave", {"room": room}, on_loss=OnLoss.DONE, retry=False, timeout=timeout)

    def send(
        self,
        *,
        room: str | None = None,
        to: str | None = None,
        body: Any,
        kind: str = "text",
        cid: str | None = None,
        reply_to: str | None = None,
        mentions: Iterable[str] = (),
        timeout: float | None = None,
    ) -> SendResult:
        """Send ``body`` to a joined ``room`` or to the user ``to``; returns once the message is
        stored (durable). The ``cid`` (a fresh uuid4 hex unless given) makes every resend safe:
        after a reconnect, or by the caller after :class:`RequestTimeout` (its ``cid``).
        ``reply_to`` (a message of the same conversation) makes it a reply in that message's
        thread: the result's ``thread`` is the thread's root; a message that is not there (or
        was deleted) raises ``ServerError`` (``not_found``).

        ``mentions`` names users the message mentions besides the ``@user``s of its text."""
        if (room is None) == (to is None):
            raise ValueError("give exactly one of room= or to=")
        cid = cid or uuid.uuid4().hex
        args: dict[str, Any] = {"room": room} if room is not None else {"to": to}
        args.update(body=body, kind=kind, cid=cid)
        if reply_to is not None:
            args["reply_to"] = reply_to
        named = list(mentions)
        if named:
            args["mentions"] = named
        data = self._request("send", args, timeout=timeout, cid=cid)
        return SendResult(
            mid=data["mid"], seq=data["seq"], ts=data["ts"], cid=cid, thread=data.get("thread")
        )

    def typing(
        self, *, room: str | None = None, to: str | None = None, timeout: float | None = None
    ) -> None:
        """Tell a joined ``room`` or the user ``to`` that this user is typing: the others get
        a ``typing`` event ``{room | to, user, ttl_ms}`` that lasts ``ttl_ms``. Call it again
        every 2-3 s while the user types (the server relays at most one every 2 s and answers
        the rest); the indicator ends at the user's next message. Sent once: an indicator
        lost with the link is not worth resending, and a refusal (``rate_limited``) is raised."""
        if (room is None) == (to is None):
            raise ValueError("give exactly one of room= or to=")
        args: dict[str, Any] = {"room": room} if room is not None else {"to": to}
        self._request("typing", args, on_loss=OnLoss.DONE, retry=False, timeout=timeout)

    # -- changes to stored messages: edit and delete ---------------------------------------------

    def edit(
        self, mid: str, body: Any, *, cid: str | None = None, timeout: float | None = None
    ) -> SendResult:
        """Replace the body of this user's message ``mid`` (within the server's edit window);
        returns once the edit is stored: the message's ``mid``, the edit's own ``seq`` and
        ``ts``. Members get an ``edit`` event. The ``cid`` (a fresh uuid4 hex unless given)
        makes a resend safe, as for :meth:`send`."""
        cid = cid or uuid.uuid4().hex
        data = self._request(
            "edit", {"mid": mid, "body": body, "cid": cid}, timeout=timeout, cid=cid
        )
        return SendResult(mid=data["mid"], seq=data["seq"], ts=data["ts"], cid=cid)

    def delete(
        self, mid: str, *, cid: str | None = None, timeout: float | None = None
    ) -> SendResult:
        """Delete this user's message ``mid``: its body is erased, a tombstone stays. Returns
        once the delete is stored, like :meth:`edit`; members get a ``delete`` event."""
        cid = cid or uuid.uuid4().hex
        data = self._request("delete", {"mid": mid, "cid": cid}, timeout=timeout, cid=cid)
        return SendResult(mid=data["mid"], seq=data["seq"], ts=data["ts"], cid=cid)

    def react(
        self,
        mid: str,
        key: str,
        on: bool = True,
        *,
        cid: str | None = None,
        timeout: float | None = None,
    ) -> SendResult:
        """Add (``on``) or remove this user's reaction ``key`` (an emoji or a short name, at
        most 32 bytes of UTF-8) on message ``mid`` of a conversation of theirs. Returns once it
        is stored: the message's ``mid``, the reaction's own ``seq`` and ``ts``; members get a
        ``reaction`` event. Reacting twice changes nothing and is answered with the
        conversation's latest ``seq``. A new key on a message that has ``max_reactions``
        different ones raises ``ServerError`` (``too_many_reactions``). The ``cid`` makes a
        resend safe, as for :meth:`send`."""
        cid = cid or uuid.uuid4().hex
        data = self._request(
            "react", {"mid": mid, "key": key, "on": on, "cid": cid}, timeout=timeout, cid=cid
        )
        return SendResult(mid=data["mid"], seq=data["seq"], ts=data["ts"], cid=cid)

    def ack(self, mid: str, *, timeout: float | None = None) -> None:
        """This user has the direct message ``mid`` (sent automatically with ``auto_ack``)."""
        self._request("ack", {"mid": mid}, timeout=timeout)

    def read(
        self,
        mid: str | None = None,
        *,
        room: str | None = None,
        with_user: str | None = None,
        seq: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """``read(mid)``: this user read the direct message ``mid``, its sender gets a ``read``
        receipt (returns None). ``read(room=..., seq=...)`` or ``read(with_user=..., seq=...)``:
        move this user's read marker there up to ``seq`` (never back); returns ``{room | with,
        marker, unread, mentions}``, and the user's other devices get a ``marker`` event."""
        if mid is not None:
            if room is not None or with_user is not None or seq is not None:
                raise ValueError("give mid alone, or room= or with_user= with seq=")
            self._request("read", {"mid": mid}, timeout=timeout)
            return None
        if (room is None) == (with_user is None) or seq is None:
            raise ValueError("give mid, or exactly one of room= or with_user= and seq=")
        args: dict[str, Any] = {"room": room} if room is not None else {"with": with_user}
        return self._request("read", {**args, "seq": seq}, timeout=timeout)

    def unread(
        self,
        rooms: Iterable[str] = (),
        *,
        with_users: Iterable[str] = (),
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """This user's read marker and counts in each of ``rooms`` and each direct conversation
        with one of ``with_users``, in that order: ``[{room | with, seq, marker, unread,
        mentions}]`` (``seq``: the conversation's latest; counts stop at the server's
        ``unread_count_max``, 999: show "999+")."""
        args = {"rooms": list(rooms), "with": list(with_users)}
        found: list[dict[str, Any]] = self._request("unread", args, timeout=timeout)[
            "conversations"
        ]
        return found

    def history(
        self,
        room: str | None = None,
        *,
        with_user: str | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Stored messages of ``room`` or of the conversation ``with_user``, ascending by seq:
        ``{messages, more}``; ``before``/``after`` page by seq (docs/protocol.md)."""
        if (room is None) == (with_user is None):
            raise ValueError("give exactly one of room or with_user=")
        args: dict[str, Any] = {"room": room} if room is not None else {"with": with_user}
        return self._request("history", _paged(args, before, after, limit), timeout=timeout)

    def thread(
        self,
        mid: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The thread whose root is message ``mid``: ``{root, messages, more}``, the root's
        ``msg`` map (with its ``thread`` summary when it has replies) and a page of its
        replies, ascending by seq, paged by ``before``/``after`` exactly like :meth:`history`.
        A thread the user may not read, or a ``mid`` that is not a root, raises
        ``ServerError`` (``not_found``)."""
        return self._request("thread", _paged({"mid": mid}, before, after, limit), timeout=timeout)

    def more_conversations(
        self, before: str | None = None, *, limit: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """A page of the inbox after the cursor ``before``: ``{conversations, more, cursor?}``."""
        args = _given(before=before, limit=limit)
        return self._request("conversations", args, timeout=timeout)

    def members(
        self,
        room: str,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """A page of ``room``'s members, offline ones included: ``{members: [{user, status}],
        cursor?}``."""
        args = {"room": room, **_given(cursor=cursor, limit=limit)}
        return self._request("members", args, timeout=timeout)

    def moderate(
        self,
        room: str,
        action: str,
        *,
        user: str | None = None,
        mid: str | None = None,
        reason: str | None = None,
        seconds: float | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """As a moderator or owner of ``room`` (docs/moderation.md): ``kick``, ``ban``,
        ``unban``, ``mute`` or ``unmute`` ``user``, or ``delete`` another user's message
        ``mid``; ``seconds`` bounds a ban or mute. Returns the audit entry; the user's devices
        get a ``moderation`` event."""
        args = {
            "room": room,
            "action": action,
            **_given(user=user, mid=mid, reason=reason),
            **({"for": seconds} if seconds is not None else {}),
        }
        return self._request("moderate", args, timeout=timeout)

    def update_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Set ``room``'s title and/or topic (a member only): ``{room, title, topic}``; every
        member's devices get a ``room`` event."""
        args = {"room": room, **_given(title=title, topic=topic)}
        return self._request("room.update", args, timeout=timeout)

    def directory(
        self,
        query: str | None = None,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The public rooms (the ``rooms`` command) whose name or title contains ``query``:
        ``{rooms: [{room, title, topic, members}], cursor?}``. (``rooms`` is the joined rooms.)"""
        args = _given(query=query, cursor=cursor, limit=limit)
        return self._request("rooms", args, timeout=timeout)

    def presence(self, users: Iterable[str], *, timeout: float | None = None) -> dict[str, str]:
        """``{user: "online" | "offline"}`` for up to 1000 users."""
        data = self._request("presence", {"users": list(users)}, timeout=timeout)
        return dict(data.get("statuses", {}))

    def watch(self, users: Iterable[str], *, timeout: float | None = None) -> None:
        """Get a ``presence`` event whenever one of ``users`` comes online or goes offline (kept
        across reconnects)."""
        users = list(users)
        self._session.watch(users)
        try:
            self._request("watch", {"users": users}, timeout=timeout)
        except ServerError:
            self._session.unwatch(users)
            raise

    def unwatch(self, users: Iterable[str], *, timeout: float | None = None) -> None:
        users = list(users)
        self._session.unwatch(users)
        self._request("unwatch", {"users": users}, timeout=timeout)

    def ping(self, *, timeout: float | None = None) -> float:
        """A round trip to the server; returns its duration in seconds."""
        started = time.monotonic()
        self._request("ping", {}, timeout=timeout)
        return time.monotonic() - started

    def request(
        self, t: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Any command by name, for those this class has no method for (``debug.crash`` in a
        chaos drill); returns the reply's ``data``. Its safety is unknown, so it is sent once:
        not retried when the server is busy, not resent on a new link (it fails with
        :class:`LinkLost` if the link ends before the answer)."""
        args = dict(args or {})
        return self._request(t, args, on_loss=OnLoss.FAIL, retry=False, timeout=timeout)

    # -- waiting for answers -------------------------------------------------------------------

    def _request(
        self,
        t: str,
        args: dict[str, Any],
        *,
        on_loss: OnLoss = OnLoss.RESEND,
        timeout: float | None = None,
        retry: bool = True,
        cid: str | None = None,
    ) -> Any:
        """Send a command of the application and wait for its answer (see ``request_timeout``).

        With ``retry``, an answer ``overloaded``, ``internal`` or ``rate_limited`` sends it again
        after a pause (:data:`SERVER_RETRY_BACKOFF`) until the time is up; the last refusal is
        raised when no pause fits before the deadline."""
        limit = self._request_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        attempt = 0
        while True:
            self._check_usable()
            command, result = self._keeper.submit(t, args, on_loss)
            result.wait(max(0.0, deadline - time.monotonic()))
            if not result.ready():
                self._keeper.cancel(command)
                raise RequestTimeout(
                    f"no answer to {t} within {limit:g}s (the link is {self.state.value})"
                    + (f"; resend with cid={cid!r} to be safe" if cid else ""),
                    cid=cid,
                )
            try:
                return result.get(block=False)
            except ServerError as exc:
                if not retry or exc.code not in _RETRYABLE_CODES:
                    raise
                delay = SERVER_RETRY_BACKOFF.delay(attempt, self._rand)
                if deadline - time.monotonic() < delay:
                    raise
                logger.info("%s answered %s; trying again in %.2fs", t, exc.code, delay)
                gevent.sleep(delay)
                attempt += 1

    def _check_usable(self) -> None:
        keeper = self._keeper
        if keeper.closed is not None:
            raise keeper.closed
        if not keeper.started:
            raise NotConnected("call connect() first")
        if not self._wait_for_reconnect and self.state is not LinkState.CONNECTED:
            raise NotConnected(
                f"the link to {self.url} is {self.state.value}; try again once it is "
                "CONNECTED (or make the client with wait_for_reconnect=True)"
            )


def _paged(
    args: dict[str, Any], before: int | None, after: int | None, limit: int | None
) -> dict[str, Any]:
    """``args`` of a ``history`` or ``thread`` command with the cursors and limit given."""
    for name, value in (("before", before), ("after", after), ("limit", limit)):
        if value is not None:
            args[name] = value
    return args


def _given(**args: Any) -> dict[str, Any]:
    """The arguments that were given (not None)."""
    return {name: value for name, value in args.items() if value is not None}
