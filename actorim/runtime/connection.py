"""``ConnectionActor``: one per WebSocket; it runs the connection's commands, does the writes
that would block, and closes the connection.

No greenlet reads the socket: a watcher on the hub reads and decodes frames
(``actorim.web.endpoint``) and tells well-formed commands to this actor. Whatever has something
for the client (this actor, its rooms, the router, the presence tracker, the store's answers,
the endpoint's error replies) offers frames to the link's outbox. The link flushes the outbox in
a hub callback once per loop iteration, writing what the socket takes without blocking
(``Link.wake``), and wakes this actor only for what is left: the rest of a write to a client
that reads slowly (a blocking write from this actor's greenlet), an overflow (closed 1013) or a
requested close. History and thread pages are read on the store's thread and built on a page
thread, one request at a time per connection (``_page_turn``); the offline backlog of direct
messages is paged out after ``connect`` as the outbox drains (``OfflineDelivery``).

Session state (``actorim.domain.session.Session``) lives in the ``Link``, and only this actor
changes it: rooms and the presence tracker tell it what changed (``Link.notify``), and it applies
those notices before anything else it handles. Because the session outlives the actor, when
this actor crashes on a command the client gets ``internal`` for that command and a fresh actor
carries on with the same session (commands queued for the crashed one are handled, not lost); a
connection that keeps crashing is closed with 1011, alone. Stopped by its supervisor (the node
shutting down), it closes with 1001.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from actorim.domain.auth import TokenError
from actorim.domain.changes import Refusal, check_change
from actorim.domain.hooks import Outgoing, SessionInfo
from actorim.domain.markers import Counts, message_mentions
from actorim.domain.messages import (
    DELETE,
    EDIT,
    REACT,
    UNREACT,
    NewMessage,
    ReceiptStatus,
    dm_conv,
    room_conv,
)
from actorim.domain.moderation import Standing
from actorim.domain.rooms import RoomInfo
from actorim.logs import context as log_context
from actorim.ports import ConnectionClosed
from actorim.protocol import commands as cmd
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.events import encode_body, self_member_frame
from actorim.protocol.frames import CloseCode
from actorim.protocol.restart import TRY_AGAIN_LATER_CODE, try_later_reason
from actorim.protocol.webhooks import Webhooks
from actorim.protocol.wire import WireFrame
from actorim.runtime import roomcommands
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.faults import inject as inject_fault
from actorim.runtime.link import WAKE, Link, Phase
from actorim.runtime.membership import (
    MembershipChanged,
    RouterBusy,
    StoreBusy,
    apply_membership,
    ask_router,
    ask_store,
    subscribe,
    tell_join,
)
from actorim.runtime.messages import (
    Append,
    Call,
    CountsFor,
    GetMessage,
    JoinRoom,
    LeaveRoom,
    Mark,
    MoveMarker,
    Offline,
    Online,
    PresenceQuery,
    ReadPage,
    ReadThread,
    Register,
    RoomFor,
    Unregister,
    WatchChange,
)
from actorim.runtime.moderation import (
    Moderation,
    ModerationNotice,
    apply_notice,
    banned_from,
    check_not_muted,
)
from actorim.runtime.offline import OfflineDelivery
from actorim.runtime.pages import Page, build_page
from actorim.runtime.replies import ConnectionReplies
from actorim.runtime.tokens import check_expiry, policy_of, refresh, verify_fresh
from actorim.store.base import JoinCheck, Store, join_checked
from actorim.store.roomadmin import member_webhook
from supervisors import GeventActor

if TYPE_CHECKING:
    from actorim.domain.rooms import RoomInfo

__all__ = ["ConnectionActor"]

logger = logging.getLogger("actorim.connection")

# Commands a connection may have queued before its reader answers overloaded. The rate limit
# keeps well-behaved clients far below it; it bounds memory if the actor is stuck writing.
CONNECTION_MAILBOX = 1000


class ConnectionActor(GeventActor):
    """See the module docstring."""

    mailbox_capacity = CONNECTION_MAILBOX

    def __init__(self, link: Link, ctx: NodeContext) -> None:
        super().__init__()
        self.link = link
        self.ctx = ctx

    def __str__(self) -> str:
        return f"ConnectionActor {self.link.conn_id} ({self.link.user or 'anonymous'})"

    def on_start(self) -> None:
        link = self.link
        link.actor = self.actor_ref
        # Commands that were queued for the incarnation that crashed are handled, not lost.
        carried, link.carry_over = link.carry_over, []
        self._apply_notices()
        if link.close_request is None:
            for command in carried:
                if isinstance(command, Call):
                    command.func(*command.args)  # a store answer that came back meanwhile
                else:
                    self._command(command)
        self._service()

    def on_failure(self, *_exc: object) -> None:
        link = self.link
        if link.actor is self.actor_ref:
            link.actor = None
        if link.current is not None:
            link.fail(
                link.current.t,
                link.current.id,
                ErrorCode.INTERNAL,
                "the server failed while handling this command; it may not have taken effect",
            )
            link.current = None
        if not link.crashes.record(time.monotonic()):
            logger.error(
                "connection failed %d times in %ss: closing it",
                len(link.crashes),
                link.crashes.max_seconds,
                extra=log_context(conn=link.conn_id, user=link.user),
            )
            link.request_close(CloseCode.INTERNAL_ERROR, "internal error")
        link.carry_over.extend(m for m in self.drain_mailbox() if m is not WAKE)

    def on_stop(self) -> None:
        # Stopped by its supervisor (the node shutting down): the client is told to go elsewhere.
        self._close(CloseCode.GOING_AWAY, "server shutting down", stopping=True)
        if self.link.actor is self.actor_ref:
            self.link.actor = None

    def on_receive(self, message: Any) -> Any:
        self._apply_notices()
        if message is not WAKE:
            if isinstance(message, Call):
                message.func(*message.args)
            else:
                self._command(message)
        self._service()
        return None

    def _apply_notices(self) -> None:
        """What rooms and the presence tracker told this connection, in the order they told it."""
        link = self.link
        if not link.notices:
            return
        notices, link.notices = link.notices, []
        for notice in notices:
            if isinstance(notice, MembershipChanged):
                if link.phase is Phase.CONNECTED:
                    apply_membership(self.ctx, link, notice)
            elif isinstance(notice, ModerationNotice):
                apply_notice(link, notice)
            else:
                link.session.apply(notice)

    # -- writing and closing ---------------------------------------------------------------------

    def _service(self) -> None:
        """Write what the outbox holds; carry out an overflow or a requested close."""
        link = self.link
        if link.phase is Phase.CLOSED:
            return
        outbox = link.outbox
        if outbox.overflowed:
            self.ctx.metrics.slow_consumer_closes.inc()
            self._close(CloseCode.TRY_AGAIN_LATER, "slow consumer: too many frames waiting")
            return
        if outbox.frames:
            try:
                link.ws.write(outbox.take())
            except ConnectionClosed:
                self._close(CloseCode.ABNORMAL_CLOSURE, "")
                return
            link.written()
        if link.close_request is not None:
            self._close(*link.close_request)

    def _close(self, code: int, reason: str, *, stopping: bool = False) -> None:
        link = self.link
        if link.phase is Phase.CLOSED:
            return
        logger.debug(
            "closing (%d %s)", code, reason, extra=log_context(conn=link.conn_id, user=link.user)
        )
        was_connected = link.phase is Phase.CONNECTED
        if not was_connected:
            self.ctx.admission.done(link.ws, time.monotonic(), connected=False)
        if was_connected and link.user is not None:
            self.ctx.hooks.disconnected(link.user, self._session_info())
        rooms = link.session.closing()
        link.offline = None  # a page still being read is dropped; the rest stays pending
        self._leave_everything(rooms, was_connected)
        if not link.outbox.overflowed and link.outbox.frames:
            with contextlib.suppress(ConnectionClosed):
                link.ws.write(link.outbox.take())
        link.session.closed()
        try:
            link.ws.close(code, reason)
        except Exception:
            logger.debug("closing %s failed", link, exc_info=True)
        link.done.set()
        if not stopping:
            self.stop()

    def _session_info(self) -> SessionInfo:
        link = self.link
        return SessionInfo(link.session.token or "", self.ctx.node_id, link.remote or None)

    def _leave_everything(self, rooms: dict[str, Any], was_connected: bool) -> None:
        link = self.link
        for state in rooms.values():
            if state.actor is not None:
                with contextlib.suppress(ActorDeadError):
                    state.actor.tell(LeaveRoom(link))
        if was_connected:
            # A restarting router or tracker rebuilds from the live links.
            with contextlib.suppress(Unavailable):
                self.ctx.refs.tell_router(Unregister(link))
            with contextlib.suppress(Unavailable):
                self.ctx.refs.tell_presence(Offline(link))
        self.ctx.directory.links.pop(link.conn_id, None)

    # -- commands --------------------------------------------------------------------------------

    def _command(self, command: Any) -> None:
        link = self.link
        if link.phase is not Phase.AWAITING_CONNECT and link.phase is not Phase.CONNECTED:
            return
        link.current = command
        try:
            if link.phase is Phase.AWAITING_CONNECT:
                if isinstance(command, cmd.Connect):
                    self._connect(command)
                else:
                    link.fail(
                        command.t, command.id, ErrorCode.UNAUTHENTICATED, "send connect first"
                    )
                    link.request_close(CloseCode.POLICY_VIOLATION, "connect must come first")
            elif isinstance(command, cmd.Connect):
                link.fail(
                    command.t,
                    command.id,
                    ErrorCode.BAD_REQUEST,
                    "this connection is connected already",
                )
            else:
                _HANDLERS[type(command)](self, command)
        except CommandError as exc:
            link.fail(command.t, command.id, exc.code, exc.message)
        except Unavailable as exc:
            link.fail(command.t, command.id, ErrorCode.OVERLOADED, f"{exc}; retry in a moment")
        link.current = None

    def _ask_router(self, message: Any) -> Any:
        return ask_router(self.ctx, message)

    def _connect(self, command: cmd.Connect) -> None:
        link = self.link
        try:
            identity = verify_fresh(self.ctx, command.token)
        except TokenError as exc:
            logger.info(
                "authentication refused: %s", exc.message, extra=log_context(conn=link.conn_id)
            )
            link.fail(command.t, command.id, ErrorCode.UNAUTHENTICATED, exc.message)
            link.request_close(CloseCode.POLICY_VIOLATION, "authentication failed")
            return
        link.session.authenticated(identity)
        # Before the link is registered: a direct message that reaches it from then on waits
        # behind the offline backlog instead of overtaking it.
        offline = link.offline = OfflineDelivery(self.ctx, link)
        try:
            # Past max_connections_per_user, the user's connection heard from least recently
            # is closed 4009 to make room (``router._make_room``).
            self._ask_router(Register(link))
        except Unavailable as exc:
            link.offline = None
            if isinstance(exc, RouterBusy):
                # The router registers the link when it gets there; this undoes it after
                # (its mailbox is in order), so a client that gives up leaves nothing behind.
                with contextlib.suppress(Unavailable):
                    self.ctx.refs.tell_router(Unregister(link))
            raise
        # The user's conversations, read before the connection counts as connected: a room
        # the user joins on another device from now on reaches it as a notice.
        # With them, in the same request, the rooms where the user is muted: a send there is
        # refused without asking the store.
        mutes: dict[str, int] | None = None
        try:
            everything, entries, paging, mutes = roomcommands.connect_reads(self.ctx, link)
        except (Unavailable, CommandError) as exc:
            if isinstance(exc, StoreBusy) or command.since:
                # Connected without the user's rooms, a client that resumes them (``since``)
                # would resume none and miss what they get until it reconnects, and one the
                # store is only too busy for is served in a moment: refused (overloaded:
                # retry), its registration undone, as with a router too busy.
                link.offline = None
                with contextlib.suppress(Unavailable):
                    self.ctx.refs.tell_router(Unregister(link))
                message = exc.message if isinstance(exc, CommandError) else str(exc)
                raise Unavailable(message) from exc
            # The store's link is down (Redis away) and the client resumes nothing: it goes on
            # without its rooms, as a join goes on without lasting membership.
            everything, entries, paging = [], [], {"more": False}
            logger.warning(
                "connect without the inbox: the store did not answer",
                extra=log_context(conn=link.conn_id, user=link.user),
            )
        user = identity.user
        if mutes is None:
            with contextlib.suppress(Unavailable, CommandError):
                mutes = ask_store(self.ctx, lambda store: store.mutes_of(user), "read mutes")
        if mutes is not None:
            link.mutes = mutes
        link.session.connected(secrets.token_hex(8))
        with contextlib.suppress(Unavailable):  # the tracker rebuilds from live links if down
            self.ctx.refs.tell_presence(Online(link))
        data: dict[str, Any] = {
            "user": identity.user,
            "session": link.session.token,
            "node": self.ctx.node_id,
            "heartbeat": self.ctx.config.heartbeat,
            "epoch": self.ctx.epoch,
            "conversations": entries,
        }
        if paging["more"]:
            data["conversations_more"] = True
            data["conversations_cursor"] = paging["cursor"]
        link.reply(command.t, command.id, data)
        self.ctx.admission.done(link.ws, time.monotonic(), connected=True)
        self.ctx.hooks.connected(identity.user, self._session_info())
        # Every room of the user, each from the seq the client last saw there (``since``, in
        # the same epoch) or else the one the inbox gave: what came after it is replayed by the
        # room (or announced as a gap), in order before the live events.
        seen = dict(command.since) if command.epoch in (None, self.ctx.epoch) else {}
        rooms = [(c.room, seen.get(c.room, c.seq), c.seq) for c in everything if c.room is not None]
        self._subscribe(rooms)
        # A token with less than the notice left is asked to refresh at once.
        check_expiry(self.ctx, link, policy_of(self.ctx), time.time())
        # Every direct message this user has not acknowledged, oldest first, a page at a time;
        # live ones follow.
        offline.start()

    def _subscribe(self, rooms: Sequence[tuple[str, int | None, int | None]]) -> None:
        """Subscribe the connection to its user's rooms at ``connect``."""
        link = self.link
        try:
            subscribe(self.ctx, link, rooms)
        except RouterBusy:
            # Its rooms are not subscribed: the client is sent away to come back later and
            # resume them with ``since``, as after a restart.
            delay = self.ctx.admission.hint(time.monotonic())
            link.request_close(TRY_AGAIN_LATER_CODE, try_later_reason(delay))
        except Unavailable:
            pass  # the router is restarting: as ever, the connection goes on without them

    def _join(self, command: cmd.Join) -> None:
        link = self.link
        name = command.room
        assert link.identity is not None
        if not link.identity.may_join(name):
            raise CommandError(ErrorCode.FORBIDDEN, f"your token does not allow room {name!r}")
        user = link.identity.user
        limit = self.ctx.config.max_rooms_per_user
        webhooks = Webhooks(self.ctx.config.webhooks)
        now_ms = int(time.time() * 1000)

        def join_in_store(
            store: Store,
        ) -> tuple[JoinCheck | None, RoomInfo | None, Standing | None]:
            standing = store.standings(name, [user]).get(user)
            if standing is not None and standing.banned(now_ms):
                return None, None, standing
            with store.atomically():
                outcome = join_checked(store, user, name, max_rooms=limit)
                if outcome == "joined":
                    member_webhook(
                        store, webhooks, name, [user], added=True, by="user", now_ms=now_ms
                    )
            return outcome, store.room_info([name]).get(name), standing

        try:
            outcome, info, standing = ask_store(self.ctx, join_in_store, f"join room {name!r}")
        except Unavailable:
            # The store is away (a cluster cut off from Redis): the connection joins for
            # itself, as before membership lasted, and the reply says so.
            outcome, info, standing = None, None, None
        if standing is not None and standing.banned(now_ms):
            raise banned_from(name, standing)
        if outcome == "private":
            raise CommandError(
                ErrorCode.FORBIDDEN,
                f"room {name!r} is private: only members the application added may join it",
            )
        if standing is not None and standing.muted(now_ms):
            link.mutes[name] = standing.muted_until
        if outcome == "full":
            raise CommandError(
                ErrorCode.TOO_MANY_ROOMS,
                f"you are a member of {limit} rooms, as many as a user may be; leave one first",
            )
        if outcome == "joined":
            # The user's other devices, on every node, subscribe to the room too.
            frame = self_member_frame(name, user, joined=True)
            self.ctx.broker.publish_to_user(user, frame, origin=link)
        state = self._ask_router(RoomFor(name))
        title, topic = (info.title, info.topic) if info is not None else ("", "")
        role = standing.role if standing is not None else "member"
        join = JoinRoom(
            link, command.id, command.since, command.epoch, title, topic, outcome is not None, role
        )
        if not tell_join(state, join):
            raise Unavailable(f"room {name!r} is restarting")

    def _moderate(self, command: cmd.Moderate) -> None:
        """A moderator acts (``actorim.runtime.moderation``): answered with the audit entry
        once kept and announced to the affected user."""
        link = self.link
        assert link.identity is not None and link.user is not None
        if not link.identity.may_join(command.room):
            raise CommandError(
                ErrorCode.FORBIDDEN, f"your token does not allow room {command.room!r}"
            )
        entry = Moderation(self.ctx).act(
            command.room,
            command.action,
            by=link.user,
            user=command.user,
            mid=command.mid,
            reason=command.reason,
            for_s=command.for_s,
        )
        link.reply(command.t, command.id, entry.as_json())

    def _leave(self, command: cmd.Leave) -> None:
        link = self.link
        user = link.user
        assert user is not None
        name = command.room
        webhooks = Webhooks(self.ctx.config.webhooks)
        now_ms = int(time.time() * 1000)

        def leave(store: Store) -> bool:
            with store.atomically():
                left = store.leave_room(user, name)
                if left:
                    member_webhook(
                        store, webhooks, name, [user], added=False, by="user", now_ms=now_ms
                    )
            return left

        try:
            was_member = ask_store(self.ctx, leave, f"leave room {name!r}")
        except Unavailable:
            was_member = False  # the store is away: this connection leaves for itself
        if was_member:
            # Every other device of the user, on every node, leaves the room too.
            self.ctx.broker.publish_to_user(
                user, self_member_frame(name, user, joined=False), origin=link
            )
        state = link.session.left(name)
        if state is None:
            if not was_member:
                raise CommandError(ErrorCode.NOT_FOUND, f"you are not in room {name!r}")
            link.reply(command.t, command.id, {})
            return
        try:
            assert state.actor is not None
            state.actor.tell(LeaveRoom(self.link, command.id))
        except (ActorDeadError, AssertionError):
            self.link.reply(command.t, command.id, {})

    def _send(self, command: cmd.Send) -> None:
        link = self.link
        user = link.user
        assert user is not None
        if not self.ctx.broker.healthy:
            raise CommandError(
                ErrorCode.OVERLOADED,
                "the cluster's link to Redis is down, so the message cannot be made durable; "
                "resend it with the same cid in a few seconds",
            )
        if command.room is not None:
            if command.room not in link.rooms:
                raise CommandError(
                    ErrorCode.FORBIDDEN, f"join room {command.room!r} before sending to it"
                )
            check_not_muted(link, command.room, int(time.time() * 1000))
            conv = room_conv(command.room)
        else:
            assert command.to is not None
            conv = dm_conv(user, command.to)
        limit = self.ctx.config.max_mentions
        if len(set(command.mentions)) > limit:
            raise CommandError(
                ErrorCode.TOO_MANY_MENTIONS,
                f"a message may mention at most {limit} users; name fewer in 'mentions'",
            )
        mentions = message_mentions(command.body, listed=command.mentions, sender=user, limit=limit)
        if command.to is not None:
            # Only the other user of a direct conversation can read it, and so count it.
            mentions = tuple(name for name in mentions if name == command.to)
        outgoing = Outgoing(
            "send",
            user,
            command.room,
            command.to,
            command.kind,
            command.body,
            command.cid,
            session=link.session.token,
        )
        value = self.ctx.hooks.before_publish(outgoing)  # may wait: this connection alone
        now_ms = int(time.time() * 1000)
        body = encode_body(value)
        # The user's typing indicator there ends with this message: the next is relayed at once.
        self.ctx.typing.clear((user, conv))
        origin = f"{self.ctx.node_id}/{link.conn_id}"
        message = _new_message(conv, user, command, body=body, now_ms=now_ms, origin=origin)
        message = replace(message, mentions=mentions)
        self.ctx.refs.tell_store(Append(message, value, link, command.id))

    def _typing(self, command: cmd.Typing) -> None:
        """Relay the user's typing indicator to the conversation's other connections, unless
        one was relayed for this user there within ``typing_throttle`` (answered all the same:
        a client renews while its user types). Ephemeral: no store, no seq, no replay."""
        link = self.link
        user = link.user
        assert user is not None
        if command.room is not None:
            if command.room not in link.rooms:
                raise CommandError(
                    ErrorCode.FORBIDDEN, f"join room {command.room!r} before typing in it"
                )
            check_not_muted(link, command.room, int(time.time() * 1000))
            conv = room_conv(command.room)
        else:
            assert command.to is not None
            conv = dm_conv(user, command.to)
        link.reply(command.t, command.id, {})
        if command.to == user or not self.ctx.typing.admit((user, conv), time.monotonic()):
            return
        ttl_ms = int(self.ctx.config.typing_ttl * 1000)
        event: dict[str, Any] = {"t": "typing", "user": user, "ttl_ms": ttl_ms}
        if command.room is not None:
            event["room"] = command.room
            self.ctx.broker.publish_ephemeral(command.room, WireFrame(event), link)
        elif command.to is not None:
            event["to"] = command.to
            self.ctx.broker.publish_to_user(command.to, WireFrame(event), origin=link)

    def _presence(self, command: cmd.Presence) -> None:
        self.ctx.refs.tell_presence(PresenceQuery(self.link, command.id, command.users))

    def _watch(self, command: cmd.Watch | cmd.Unwatch) -> None:
        watch = isinstance(command, cmd.Watch)
        self.ctx.refs.tell_presence(WatchChange(self.link, command.id, command.users, watch))

    def _ping(self, command: cmd.Ping) -> None:
        self.link.reply(command.t, command.id, {})

    def _receipt(self, command: cmd.Ack | cmd.Read) -> None:
        link = self.link
        status: ReceiptStatus = "read" if isinstance(command, cmd.Read) else "delivered"
        broker = self.ctx.broker

        def done(receipt: Any, error: BaseException | None) -> None:
            if isinstance(error, Unavailable):
                link.fail(command.t, command.id, ErrorCode.OVERLOADED, str(error))
                return
            if error is not None:
                link.fail(
                    command.t, command.id, ErrorCode.INTERNAL, "the receipt could not be recorded"
                )
                return
            link.reply(command.t, command.id, {})
            if receipt is not None:
                frame = WireFrame(
                    {"t": "receipt", "mid": receipt.mid, "by": receipt.by, "status": receipt.status}
                )
                broker.publish_to_user(receipt.sender, frame)

        assert link.user is not None and command.mid is not None
        # Into the store's group commit, beside the sends: one sync for many receipts.
        replies = ConnectionReplies(link)
        self.ctx.refs.tell_store(Mark(command.mid, link.user, status, replies, done))

    def _read(self, command: cmd.Read) -> None:
        """``read {mid}`` is a receipt; ``read {room | with, seq}`` moves the user's read
        marker there, answered with the counts after it; when it moved, every other
        connection of the user, on every node, gets a ``marker`` event."""
        if command.mid is not None:
            self._receipt(command)
            return
        link = self.link
        user = link.user
        assert user is not None and command.seq is not None
        conv = _readable(link, command.room, command.with_)
        where = _where(command.room, command.with_)
        broker = self.ctx.broker

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                _store_failed(link, command.t, command.id, error, "the read marker")
                return
            counts, moved = result
            link.reply(command.t, command.id, {**where, **_counts_data(counts, last=False)})
            if moved:
                event = {"t": "marker", **where, "seq": counts.marker}
                event |= {"unread": counts.unread, "mentions": counts.mentions}
                broker.publish_to_user(user, WireFrame(event), origin=link)

        cap = self.ctx.config.unread_count_max
        self.ctx.refs.tell_store(
            MoveMarker(user, conv, command.seq, cap, ConnectionReplies(link), done)
        )

    def _unread(self, command: cmd.Unread) -> None:
        """The user's marker and counts in each conversation named, in the order named."""
        link = self.link
        user = link.user
        assert user is not None
        most = self.ctx.config.unread_max_conversations
        if len(command.rooms) + len(command.with_) > most:
            raise CommandError(
                ErrorCode.BAD_REQUEST,
                f"ask about at most {most} conversations (rooms and with together) at once",
            )
        asked = [(_readable(link, room, None), _where(room, None)) for room in command.rooms]
        asked += [(_readable(link, None, other), _where(None, other)) for other in command.with_]
        # Charged by the conversations it names, as a history page is by its size: the
        # connection's next commands are refused (rate_limited) until the bucket refills.
        per_token = self.ctx.config.unread_conversations_per_token
        link.limiter.charge(time.monotonic(), len(asked) / per_token)

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                _store_failed(link, command.t, command.id, error, "unread counts")
                return
            found = [{**where, **_counts_data(result[conv], last=True)} for conv, where in asked]
            link.reply(command.t, command.id, {"conversations": found})

        convs = tuple(conv for conv, _ in asked)
        cap = self.ctx.config.unread_count_max
        self.ctx.refs.tell_store(CountsFor(user, convs, cap, ConnectionReplies(link), done))

    def _history(self, command: cmd.History) -> None:
        link = self.link
        conv = _readable(link, command.room, command.with_)
        if link.pages.arrive((command, conv)):
            _page_turn(self.ctx, link, (command, conv))

    def _thread(self, command: cmd.Thread) -> None:
        """Page a thread like ``history``, in the same turns: its conversation is known once
        the root is read, and the page is answered only when the user may read it."""
        if self.link.pages.arrive((command, None)):
            _page_turn(self.ctx, self.link, (command, None))

    def _debug_crash(self, command: cmd.DebugCrash) -> None:
        inject_fault(self.ctx, self.link, command)

    def _refresh(self, command: cmd.Refresh) -> None:
        refresh(self.ctx, self.link, command)

    # -- changes to stored messages: edit and delete ---------------------------------------------

    def _change(self, command: cmd.Edit | cmd.Delete | cmd.React) -> None:
        """Read the message, check who may change it (``actorim.domain.changes``), then store
        the change like a send: the store makes it atomically (refusing a message deleted
        meanwhile) and publishes it in the conversation's order."""
        link = self.link
        assert link.user is not None
        if not self.ctx.broker.healthy:
            raise CommandError(ErrorCode.OVERLOADED, _CHANGE_LINK_DOWN)
        ctx = self.ctx
        now_ms = int(time.time() * 1000)

        def found(target: Any, error: BaseException | None) -> None:
            if isinstance(error, Unavailable):
                link.fail(
                    command.t, command.id, ErrorCode.OVERLOADED, f"{error}; retry in a moment"
                )
                return
            if error is not None:
                link.fail(
                    command.t,
                    command.id,
                    ErrorCode.INTERNAL,
                    "the message could not be read; retry",
                )
                return
            try:
                message = _change_of(ctx, link, command, target, now_ms)
                value = getattr(command, "body", None)
                if isinstance(command, cmd.Edit):
                    value = _edit_checked(ctx, link, command, message, target.kind)
                    message = replace(message, body=encode_body(value))
                ctx.refs.tell_store(
                    Append(
                        message,
                        value,
                        link,
                        command.id,
                        command=command.t,
                    )
                )
            except CommandError as exc:
                link.fail(command.t, command.id, exc.code, exc.message)
            except Unavailable as exc:
                link.fail(command.t, command.id, ErrorCode.OVERLOADED, f"{exc}; retry in a moment")

        ctx.refs.tell_store(GetMessage(command.mid, ConnectionReplies(link), found))


def _readable(link: Link, room: str | None, with_: str | None) -> str:
    """The conversation key of ``room`` or of the direct conversation with ``with_``, when the
    user may read it (``history``'s rule: a room their token allows, any direct conversation of
    theirs); else the CommandError that refuses it."""
    assert link.identity is not None and link.user is not None
    if room is not None:
        if not link.identity.may_join(room):
            raise CommandError(ErrorCode.FORBIDDEN, f"your token does not allow room {room!r}")
        return room_conv(room)
    assert with_ is not None
    return dm_conv(link.user, with_)


def _where(room: str | None, with_: str | None) -> dict[str, str]:
    """How replies and events name a conversation: ``room``, or ``with`` the other user."""
    return {"room": room} if room is not None else {"with": with_ or ""}


def _counts_data(counts: Counts, *, last: bool) -> dict[str, int]:
    """A conversation's counts on the wire; with ``last``, its last ``seq`` too."""
    data = {"marker": counts.marker, "unread": counts.unread, "mentions": counts.mentions}
    return {"seq": counts.seq, **data} if last else data


def _store_failed(link: Link, t: str, command_id: int, error: BaseException, what: str) -> None:
    """Answer a command whose store request failed: overloaded when the store is away for a
    moment, internal otherwise."""
    if isinstance(error, Unavailable):
        link.fail(t, command_id, ErrorCode.OVERLOADED, f"{error}; retry in a moment")
    else:
        link.fail(t, command_id, ErrorCode.INTERNAL, f"{what} could not be read or written; retry")


_PageRequest = tuple[cmd.History, str] | tuple[cmd.Thread, None]


def _page_turn(ctx: NodeContext, link: Link, turn: _PageRequest | None) -> None:
    """Start the history or thread request whose turn it is (one per connection at a time).

    The page is read on the store thread and built into its reply frame on the page thread;
    the reply's bytes are then charged to the connection's rate limit. A request whose turn
    comes while those charges leave the connection in debt is answered ``rate_limited``, and
    the next one is looked at: a client pulling large pages slows down, nobody else does.
    """
    while turn is not None:
        command, conv = turn
        if link.limiter.in_debt(time.monotonic()):
            link.fail(command.t, command.id, ErrorCode.RATE_LIMITED, _PAGES_TOO_FAST)
        elif _start_page(ctx, link, command, conv):
            return
        turn = link.pages.finish()


def _start_page(
    ctx: NodeContext, link: Link, command: cmd.History | cmd.Thread, conv: str | None
) -> bool:
    """Ask the store for the page; False when it could not be asked (answered already)."""
    config = ctx.config
    build = partial(
        build_page,
        command.id,
        encoding=link.encoding,
        max_bytes=config.history_page_bytes,
        newest=command.after is None,
    )

    def done(page: Page | None, error: BaseException | None) -> None:
        if isinstance(error, CommandError):
            link.fail(command.t, command.id, error.code, error.message)
        elif isinstance(error, Unavailable):
            link.fail(
                command.t,
                command.id,
                ErrorCode.OVERLOADED,
                f"{command.t} cannot be read now: {error}",
            )
        elif error is None and isinstance(command, cmd.Thread) and not _may_read(link, page):
            link.fail(command.t, command.id, ErrorCode.NOT_FOUND, _no_thread(command.mid))
        elif error is not None or page is None:
            link.fail(
                command.t, command.id, ErrorCode.INTERNAL, f"{command.t} could not be read; retry"
            )
        else:
            link.limiter.charge(time.monotonic(), len(page.frame) / config.history_bytes_per_token)
            link.reply_frame(command.t, command.id, page.frame)
        _page_turn(ctx, link, link.pages.finish())

    replies = ConnectionReplies(link)
    read: ReadPage | ReadThread
    bounds = (command.before, command.after, command.limit)
    if isinstance(command, cmd.Thread):
        thread_guard = None
        if link.user:
            thread_guard = partial(roomcommands.refuse_reader_of_root, link.user, set(link.rooms))
        read = ReadThread(
            command.mid, *bounds, _thread_page(build), replies, done, link.user, thread_guard
        )
    else:
        assert conv is not None
        guard = None
        if command.room is not None and command.room not in link.rooms and link.user:
            guard = partial(roomcommands.refuse_reader, link.user, command.room)
        read = ReadPage(conv, *bounds, build, replies, done, link.user, guard)
    try:
        ctx.refs.tell_store(read)
    except Unavailable as exc:
        link.fail(command.t, command.id, ErrorCode.OVERLOADED, f"{exc}; retry in a moment")
        return False
    return True


def _thread_page(build: Callable[..., Page]) -> Callable[..., Page | None]:
    """``build`` for a thread's page: None when the root is not there (a thread is read
    through its root)."""

    def build_thread(root: Any, messages: Any, more: bool) -> Page | None:
        return None if root is None else build(messages, more, root=root)

    return build_thread


def _may_read(link: Link, page: Page | None) -> bool:
    """Whether the user may read the thread of ``page`` (None: its root is not there): its
    root's conversation by ``history``'s rule, a room the token allows, or a direct
    conversation of theirs."""
    root = None if page is None else page.root
    if root is None or link.identity is None:
        return False
    if root.room is not None:
        return bool(link.identity.may_join(root.room))
    return link.user in (root.sender, root.to)


def _change_of(
    ctx: NodeContext,
    link: Link,
    command: cmd.Edit | cmd.Delete | cmd.React,
    target: Any,
    now_ms: int,
) -> NewMessage:
    """The change ``command`` asks of ``target`` (the message as read), or the CommandError
    that refuses it."""
    user = link.user
    assert user is not None and link.identity is not None
    if isinstance(command, cmd.React):
        kind = REACT if command.on else UNREACT
    else:
        kind = EDIT if isinstance(command, cmd.Edit) else DELETE
    unknown = CommandError(ErrorCode.NOT_FOUND, f"no message {command.mid!r} you can see")
    if target is None:
        raise unknown
    if target.room is not None:
        if not link.identity.may_join(target.room):
            raise unknown
        if target.room not in link.rooms:
            raise CommandError(
                ErrorCode.FORBIDDEN, f"join room {target.room!r} before changing its messages"
            )
        if kind != DELETE:
            check_not_muted(link, target.room, now_ms)
    elif user not in (target.sender, target.to):
        raise unknown
    window_ms = int(ctx.config.edit_window * 1000)
    refusal = check_change(target, by=user, kind=kind, now_ms=now_ms, edit_window_ms=window_ms)
    if refusal is Refusal.UNKNOWN:
        raise unknown
    if refusal is Refusal.NOT_AUTHOR:
        raise CommandError(ErrorCode.FORBIDDEN, f"only the author may {kind} a message")
    if refusal is Refusal.TOO_LATE:
        raise CommandError(
            ErrorCode.FORBIDDEN,
            f"messages can be edited for {ctx.config.edit_window:g} s after sending; this one"
            " is older (it can still be deleted)",
        )
    to = target.to
    if isinstance(command, cmd.React):
        body = command.key.encode()
        # In a direct conversation a change goes from whoever makes it to the other user.
        if to == user:
            to = target.sender
    else:
        body = encode_body(command.body) if isinstance(command, cmd.Edit) else b""
    return NewMessage(
        conv=target.conv,
        sender=user,
        kind=kind,
        body=body,
        ts=now_ms,
        cid=command.cid,
        room=target.room,
        to=to,
        origin=f"{ctx.node_id}/{link.conn_id}",
        target=target.mid,
        max_reactions=ctx.config.max_reactions,
    )


def _edit_checked(
    ctx: NodeContext, link: Link, command: cmd.Edit, message: NewMessage, kind: str
) -> Any:
    """The body an edit (of a message of ``kind``) is stored with, once the application's
    ``before_publish`` saw it."""
    assert link.user is not None
    outgoing = Outgoing(
        "edit",
        link.user,
        message.room,
        message.to,
        kind,
        command.body,
        command.cid,
        target=message.target,
        session=link.session.token,
    )
    return ctx.hooks.before_publish(outgoing)


_CHANGE_LINK_DOWN = (
    "the cluster's link to Redis is down, so the change cannot be made durable; "
    "resend it with the same cid in a few seconds"
)


def _no_thread(mid: str) -> str:
    return (
        f"no thread {mid!r} you can see: name the root of a thread (a message of a room your"
        " token allows, or of a direct conversation of yours)"
    )


_PAGES_TOO_FAST = (
    "history pages are charged by their size and this connection used its allowance;"
    " wait a moment before asking for more"
)


def _new_message(
    conv: str, user: str, command: cmd.Send, *, body: bytes, now_ms: int, origin: str
) -> NewMessage:
    return NewMessage(
        conv=conv,
        sender=user,
        kind=command.kind,
        body=body,
        ts=now_ms,
        cid=command.cid,
        room=command.room,
        to=command.to,
        origin=origin,
        reply_to=command.reply_to,
    )


# Command type -> handler, shared by every connection (a per-actor table would cost each idle
# connection a dict of bound methods).
_HANDLERS: dict[type, Callable[[ConnectionActor, Any], None]] = {
    cmd.Join: ConnectionActor._join,
    cmd.Leave: ConnectionActor._leave,
    cmd.Moderate: ConnectionActor._moderate,
    cmd.Send: ConnectionActor._send,
    cmd.Typing: ConnectionActor._typing,
    cmd.Presence: ConnectionActor._presence,
    cmd.Watch: ConnectionActor._watch,
    cmd.Unwatch: ConnectionActor._watch,
    cmd.Ping: ConnectionActor._ping,
    cmd.Ack: ConnectionActor._receipt,
    cmd.Read: ConnectionActor._read,
    cmd.Unread: ConnectionActor._unread,
    cmd.History: ConnectionActor._history,
    cmd.Thread: ConnectionActor._thread,
    cmd.DebugCrash: ConnectionActor._debug_crash,
    cmd.Refresh: ConnectionActor._refresh,
    cmd.Edit: ConnectionActor._change,
    cmd.Delete: ConnectionActor._change,
    cmd.React: ConnectionActor._change,
    cmd.Conversations: lambda actor, c: roomcommands.conversations(actor.ctx, actor.link, c),
    cmd.Members: lambda actor, c: roomcommands.members(actor.ctx, actor.link, c),
    cmd.RoomUpdate: lambda actor, c: roomcommands.room_update(actor.ctx, actor.link, c),
    cmd.Rooms: lambda actor, c: roomcommands.rooms(actor.ctx, actor.link, c),
}
