"""What an application may do to a running node from outside a WebSocket, in one place.

``Node`` (embedding, Python calls) and the HTTP server API (``actorim.web.api``) both call these
``Operations``: one implementation behind both, so the two can never disagree. Each operation
checks its arguments first and raises ``InvalidRequest`` (nothing changed) with a message that
names the bad field; the checks are the WebSocket commands' own (``decode_command``), so a room
name or a body that the protocol refuses is refused here in the same words.

Every call blocks only the calling greenlet (the store, the presence tracker or Redis answer
it). In cluster mode presence, sessions and disconnects span every node (through the broker);
on one node they are this node's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult

from actorim.domain.hooks import Outgoing
from actorim.domain.messages import dm_conv, room_conv
from actorim.domain.moderation import FOREVER_MS, Standing, check_role
from actorim.domain.tokens import token_revocation, user_revocation
from actorim.protocol import commands as cmd
from actorim.protocol import requests
from actorim.protocol.errors import CommandError
from actorim.protocol.events import message_event, published_message
from actorim.protocol.requests import InvalidRequest
from actorim.protocol.webhooks import Webhooks
from actorim.runtime.messages import Append, Call, OutboxRequest, ReadPage, RoomsRequest, Statuses
from actorim.runtime.moderation import Moderation
from actorim.runtime.tokens import apply_revocation
from actorim.store import erase, roomadmin
from actorim.store.roomadmin import (
    Conflict,
    NotFound,
    no_room,
    room_exists,
    room_json,
    too_many_rooms,
)

if TYPE_CHECKING:
    from actorim.domain.messages import NewMessage
    from actorim.domain.webhooks import OutboxEntry
    from actorim.ports import Revocations
    from actorim.runtime.context import NodeContext
    from actorim.store.base import Store, StoredMessage

__all__ = [
    "APP_CLOSE_CODES",
    "DEFAULT_DISCONNECT_CODE",
    "MAX_REASON_BYTES",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Operations",
    "room_json",
]

APP_CLOSE_CODES = range(4000, 5000)
"""Close codes an application may give a disconnect: RFC 6455 section 7.4.2 leaves 4000-4999
to applications (actorim's own, such as 4003 "token revoked", are among them)."""

DEFAULT_DISCONNECT_CODE = 4000
"""The close code of a disconnect that names none."""

MAX_REASON_BYTES = 123
"""A close frame's payload is at most 125 bytes, two of them the code (RFC 6455 section 5.5)."""

SYSTEM_SENDER = "system"
"""Who a published message is from when the caller names nobody."""

DEFAULT_TIMEOUT_S = 10.0
"""How long an operation waits for the store or the presence tracker before giving up."""


DEAD_PAGE_DEFAULT = 100
"""Dead entries listed per page when the caller names no limit."""

DEAD_PAGE_MAX = 1000
"""The most dead entries one page lists."""

MAX_DEAD_KEY_CHARS = 128
"""A dead entry's key is an event id and a digest, well within this."""


_decoded = requests.decoded
_user = requests.user_id
_room_name = requests.room_name


def _room(room: object) -> str:
    """``room`` when the protocol takes it as a room name (the check of a ``leave``'s)."""
    command: cmd.Leave = _decoded({"t": "leave", "room": room})
    return command.room


class _RunHere:
    """Where an answer to a Python caller arrives: no actor asked, so the answer (setting the
    waiting greenlet's result) runs where it arrives."""

    def tell(self, message: Call) -> None:
        message.func(*message.args)


def _waiter() -> tuple[AsyncResult, Callable[[Any, BaseException | None], None]]:
    result: AsyncResult = AsyncResult()

    def done(value: Any, error: BaseException | None) -> None:
        if error is not None:
            result.set_exception(error)
        else:
            result.set(value)

    return result, done


class Operations:
    """The node's operations for applications; see the module docstring."""

    def __init__(self, ctx: NodeContext, revocations: Revocations) -> None:
        self.ctx = ctx
        self.revocations = revocations
        self.moderation = Moderation(ctx)

    # -- messages --------------------------------------------------------------------------------

    def publish(
        self,
        body: Any,
        *,
        room: str | None = None,
        to: str | None = None,
        sender: str = SYSTEM_SENDER,
        kind: str = "text",
        cid: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> StoredMessage:
        """Store and deliver a message as user ``sender``; returns it once durable.

        Exactly one of ``room`` and ``to``. With ``cid`` the call is idempotent: the same
        ``cid`` from the same sender in the same conversation returns the message stored the
        first time (same ``mid`` and ``seq``) and delivers nothing again.
        """
        frame: dict[str, Any] = {"t": "send", "body": body, "kind": kind}
        frame |= {"room": room} if room is not None else {}
        frame |= {"to": to} if to is not None else {}
        frame |= {"cid": cid} if cid is not None else {}
        send: cmd.Send = _decoded(frame)
        _user(sender, "from")
        outgoing = Outgoing("publish", sender, send.room, send.to, send.kind, send.body, send.cid)
        value = self.ctx.hooks.before_publish(outgoing)
        message = published_message(
            value, room=send.room, to=send.to, sender=sender, kind=send.kind, cid=send.cid
        )
        result, done = _waiter()
        self.ctx.refs.tell_store(Append(message, value, None, None, _RunHere(), done))
        return result.get(timeout=timeout)

    def history(
        self,
        *,
        room: str | None = None,
        between: tuple[str, str] | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """A page of a room's messages, or of the direct conversation ``between`` two users,
        as the WebSocket ``history`` command pages them: ``{"messages": [...], "more": bool}``,
        oldest first; ``before``/``after`` are seqs, ``limit`` at most ``history_max_limit``."""
        frame: dict[str, Any] = {"t": "history"}
        if between is not None:
            _user(between[0], "with[0]")
            frame["with"] = between[1]
        if room is not None:
            frame["room"] = room
        for key, value in (("before", before), ("after", after), ("limit", limit)):
            if value is not None:
                frame[key] = value
        command: cmd.History = _decoded(frame, self.ctx.config.history_max_limit)
        if command.room is not None:
            conv = room_conv(command.room)
        else:
            assert between is not None and command.with_ is not None
            conv = dm_conv(between[0], command.with_)

        def build(messages: list[StoredMessage], more: bool) -> dict[str, Any]:
            return {"messages": [message_event(m) for m in messages], "more": more}

        result, done = _waiter()
        read = ReadPage(conv, command.before, command.after, command.limit, build, _RunHere(), done)
        self.ctx.refs.tell_store(read)
        return result.get(timeout=timeout)

    # -- rooms and membership (actorim.store.roomadmin, shared with the Publisher) -----------

    def create_room(
        self,
        room: str,
        *,
        title: str = "",
        topic: str = "",
        public: bool = True,
        members: list[str] | tuple[str, ...] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Make ``room`` with its title, topic and ``public`` flag, and add ``members`` (at
        most ``member_list_limit``): ``{"room": <room info>, "full": [users]}``, ``full``
        naming the members refused because they belong to ``max_rooms_per_user`` rooms.
        Raises ``Conflict`` when the room exists (nothing changed)."""
        _room_name(room)
        requests.room_text(title, topic)
        requests.flag(public, "public")
        users = requests.member_list(members, self.ctx.config.member_list_limit)
        max_rooms, webhooks, now_ms = self._membership_context()
        info, full, effects = self._in_store(
            lambda store: roomadmin.create_room(
                store,
                room,
                title=title,
                topic=topic,
                public=public,
                members=users,
                max_rooms=max_rooms,
                webhooks=webhooks,
                now_ms=now_ms,
            ),
            timeout,
        )
        if info is None:
            raise room_exists(room)
        roomadmin.announce(self.ctx.broker, effects)
        return {"room": room_json(info), "full": full}

    def room(self, room: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """``room``'s title, topic, ``public`` flag and member count; NotFound when there is no
        such room."""
        _room_name(room)
        infos = self._in_store(lambda store: store.room_info([room]), timeout)
        if room not in infos:
            raise no_room(room)
        return room_json(infos[room])

    def update_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Change what is given of ``room``'s title, topic and ``public`` flag (at least one);
        its info after. Its subscribers get the ``room`` event when the title or topic
        changed. NotFound when there is no such room."""
        _room_name(room)
        if title is None and topic is None and public is None:
            raise InvalidRequest("give at least one of title, topic and public")
        requests.room_text(title, topic)
        if public is not None:
            requests.flag(public, "public")
        info, effects = self._in_store(
            lambda store: roomadmin.update_room(
                store, room, title=title, topic=topic, public=public
            ),
            timeout,
        )
        if info is None:
            raise no_room(room)
        roomadmin.announce(self.ctx.broker, effects)
        return room_json(info)

    def delete_room(self, room: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[str]:
        """Delete ``room``: every member stops being one, and their connections on every node
        leave it at once; its messages stay in history (retention removes them). The members
        it had; NotFound when there is no such room."""
        _room_name(room)
        _, webhooks, now_ms = self._membership_context()
        members, effects = self._in_store(
            lambda store: roomadmin.delete_room(store, room, webhooks=webhooks, now_ms=now_ms),
            timeout,
        )
        if members is None:
            raise no_room(room)
        roomadmin.announce(self.ctx.broker, effects)
        return list(members)

    def members(
        self,
        room: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """A page of ``room``'s members in id order, with their presence, as the WebSocket
        ``members`` pages them: ``{"members": [{"user", "status"}], "cursor"?}``; ``cursor``
        (when more follow) is the ``after`` of the next page. ``limit`` is at most
        ``member_list_limit``."""
        frame: dict[str, Any] = {"t": "members", "room": room}
        frame |= {"cursor": after} if after is not None else {}
        frame |= {"limit": limit} if limit is not None else {}
        command: cmd.Members = _decoded(frame)
        setting = self.ctx.config.member_list_limit
        size = setting if command.limit is None else min(command.limit, setting)
        users, more = self._in_store(
            lambda store: store.members_of(command.room, after=command.cursor, limit=size),
            timeout,
        )
        statuses = self.presence(users, timeout=timeout) if users else {}
        page: dict[str, Any] = {
            "members": [{"user": u, "status": statuses.get(u, "offline")} for u in users]
        }
        if more and users:
            page["cursor"] = users[-1]
        return page

    def add_member(self, room: str, user: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """Make ``user`` a member of ``room`` (the only way into a private room): their
        connections on every node start receiving it at once (those whose token allows it).
        True when they became one, False when they were one already; NotFound when there is
        no such room, Conflict when they belong to ``max_rooms_per_user`` rooms."""
        _room_name(room)
        _user(user, "user")
        max_rooms, webhooks, now_ms = self._membership_context()
        outcome, effects = self._in_store(
            lambda store: roomadmin.add_member(
                store, room, user, max_rooms=max_rooms, webhooks=webhooks, now_ms=now_ms
            ),
            timeout,
        )
        if outcome is None:
            raise no_room(room)
        if outcome == "full":
            raise too_many_rooms(user, max_rooms)
        roomadmin.announce(self.ctx.broker, effects)
        return outcome == "joined"

    def remove_member(self, room: str, user: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """End ``user``'s membership of ``room``: their connections on every node stop
        receiving it at once. False when they were not a member (nothing changed)."""
        _room_name(room)
        _user(user, "user")
        _, webhooks, now_ms = self._membership_context()
        removed, effects = self._in_store(
            lambda store: roomadmin.remove_member(
                store, room, user, webhooks=webhooks, now_ms=now_ms
            ),
            timeout,
        )
        roomadmin.announce(self.ctx.broker, effects)
        return bool(removed)

    # -- erasing a user's messages (actorim.store.erase, shared with the Publisher) ------------

    def erase(
        self,
        user: str,
        *,
        room: str | None = None,
        with_: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Delete ``user``'s messages, each as its author's own delete would (the same
        tombstone, the ``delete`` event to connected members, ``message.deleted``): in ``room``,
        in the direct conversation ``with_`` another user, or (neither) in every conversation
        where they have messages, rooms they left included. At most ``erase_limit`` per call:
        ``{"erased": n, "more": bool}``; call again while ``more``. Idempotent: a repeated call
        deletes nothing twice."""
        requests.one_place(user, room, with_)
        limit, now_ms = self.ctx.config.erase_limit, int(time.time() * 1000)

        def plan(store: Store) -> tuple[list[NewMessage], bool]:
            return erase.erase_plan(store, user, room=room, with_=with_, limit=limit, now_ms=now_ms)

        deletes, more = self._in_store(plan, timeout)
        waiting = []
        for message in deletes:
            result, done = _waiter()
            self.ctx.refs.tell_store(Append(message, None, None, None, _RunHere(), done))
            waiting.append(result)
        erased = 0
        for result in waiting:
            # A CommandError: deleted meanwhile (by its author, or an erase running beside).
            with contextlib.suppress(CommandError):
                erased += not result.get(timeout=timeout).duplicate
        return {"erased": erased, "more": more}

    def _membership_context(self) -> tuple[int, Webhooks, int]:
        config = self.ctx.config
        return config.max_rooms_per_user, Webhooks(config.webhooks), int(time.time() * 1000)

    def _in_store(self, run: Callable[[Store], Any], timeout: float) -> Any:
        result, done = _waiter()
        self.ctx.refs.tell_store(RoomsRequest(run, _RunHere(), done))
        return result.get(timeout=timeout)

    # -- presence and sessions ---------------------------------------------------------------

    def presence(
        self, users: list[str] | tuple[str, ...], *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> dict[str, Any]:
        """The status of each of ``users`` (at most ``MAX_USERS``), as the ``presence``
        command answers it."""
        command: cmd.Presence = _decoded({"t": "presence", "users": list(users)})
        result: AsyncResult = AsyncResult()
        self.ctx.refs.tell_presence(Statuses(command.users, result.set))
        return result.get(timeout=timeout)

    def sessions(self, user: str) -> list[dict[str, Any]]:
        """The live sessions of ``user``: ``session`` (the id a disconnect names), ``user``,
        ``node``, ``since`` (ms since the epoch) and ``address``; every node's in a cluster
        whose Redis answers, else this node's."""
        _user(user, "user")
        found = self.ctx.broker.sessions(user)
        if found is not None:
            return found
        now_wall, now_mono = time.time(), time.monotonic()
        return [
            {
                "session": link.session.token,
                "user": user,
                "node": self.ctx.node_id,
                "since": int((now_wall - (now_mono - link.opened_at)) * 1000),
                "address": link.remote,
            }
            for link in self.ctx.directory.links_of(user)
            if link.session.token
        ]

    def disconnect(
        self,
        user: str,
        *,
        session: str | None = None,
        code: int = DEFAULT_DISCONNECT_CODE,
        reason: str = "",
    ) -> None:
        """Close the connections of ``user`` (only ``session``'s, when given) with ``code``
        (4000-4999) and ``reason``, on every node. The client may reconnect: to keep a user
        out, revoke their tokens too."""
        _user(user, "user")
        if session is not None and (type(session) is not str or not 0 < len(session) <= 64):
            raise InvalidRequest("session must be a session id of 1-64 characters")
        if type(code) is not int or code not in APP_CLOSE_CODES:
            raise InvalidRequest(f"code must be an application close code, 4000-4999, not {code!r}")
        if type(reason) is not str or len(reason.encode()) > MAX_REASON_BYTES:
            raise InvalidRequest(f"reason must be a string of at most {MAX_REASON_BYTES} bytes")
        self.ctx.broker.disconnect(user, session, code, reason)

    # -- tokens ----------------------------------------------------------------------------------

    def revoke_token(self, token_id: str, *, expires_at: float | None = None) -> None:
        """Revoke the token whose ``jti`` is ``token_id``, on every node: connections holding
        it are closed with 4003, and it is refused at ``connect`` and ``refresh``.

        ``expires_at`` is the token's ``exp``, when the revocation can be forgotten; without
        it the revocation is kept for ``revocation_keep`` seconds. Blocks the calling greenlet
        while the revocation is stored (Redis in a cluster, else SQLite or memory).
        """
        if type(token_id) is not str or not 0 < len(token_id) <= 128:
            raise InvalidRequest("jti must be a token id of 1-128 characters")
        now = time.time()
        keep = self.ctx.config.revocation_keep
        revocation = token_revocation(token_id, expires_at=expires_at, now=now, keep_s=keep)
        self.revocations.add(revocation)
        apply_revocation(self.ctx, revocation)  # here at once; other nodes through Redis

    def revoke_user(
        self, user: str, *, before: float | None = None, until: float | None = None
    ) -> None:
        """Revoke every token of ``user`` issued at or before ``before`` (seconds since the
        epoch, default now; compared with the token's ``iat``), on every node, like
        ``revoke_token``. ``until`` is when the last of those tokens expires (default:
        ``revocation_keep`` seconds from now). Tokens minted after ``before`` still work."""
        _user(user, "user")
        now = time.time()
        keep = self.ctx.config.revocation_keep
        revocation = user_revocation(user, before=before, until=until, now=now, keep_s=keep)
        self.revocations.add(revocation)
        apply_revocation(self.ctx, revocation)

    # -- moderation (actorim.runtime.moderation) -------------------------------------------------

    def set_role(
        self, room: str, user: str, role: str, *, by: str = SYSTEM_SENDER
    ) -> dict[str, Any]:
        """Make ``user`` the ``role`` (``owner``, ``moderator`` or ``member``) of ``room``;
        the audit log keeps it under ``by``. Returns the audit entry."""
        _room(room)
        _user(user, "user")
        _user(by, "by")
        try:
            check_role(role)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return self.moderation.set_role(room, user, role, by=by).as_json()

    def standing(self, room: str, user: str) -> dict[str, Any]:
        """``user``'s standing in ``room``: ``role``, and ``banned_until`` / ``muted_until``
        (ms since the epoch; null for no expiry) while a ban or mute lasts."""
        _room(room)
        _user(user, "user")
        standing = self.moderation.standings(room, [user]).get(user, Standing())
        now_ms = int(time.time() * 1000)
        answer: dict[str, Any] = {"room": room, "user": user, "role": standing.role}
        if standing.banned(now_ms):
            answer["banned_until"] = _until(standing.banned_until)
        if standing.muted(now_ms):
            answer["muted_until"] = _until(standing.muted_until)
        return answer

    def moderate(
        self,
        room: str,
        action: str,
        *,
        user: str | None = None,
        mid: str | None = None,
        by: str = SYSTEM_SENDER,
        reason: str = "",
        for_s: float | None = None,
    ) -> dict[str, Any]:
        """Take a moderation ``action`` in ``room`` as the application (above every role):
        ``kick``, ``ban``, ``unban``, ``mute``, ``unmute`` against ``user``, or ``delete`` of
        the message ``mid``; ``for_s`` bounds a ban or mute (seconds; none: until lifted).
        ``by`` is who the audit log and the user see acting. Returns the audit entry."""
        frame = {"t": "moderate", "room": room, "action": action, "user": user, "mid": mid}
        command: cmd.Moderate = _decoded({**frame, "reason": reason, "for": for_s})
        _user(by, "by")
        entry = self.moderation.act(
            command.room,
            command.action,
            by=by,
            user=command.user,
            mid=command.mid,
            reason=command.reason,
            for_s=command.for_s,
            application=True,
        )
        return entry.as_json()

    def audit(
        self, room: str, *, before: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of ``room``'s audit log, newest first: ``{"entries": [...], "next": id or
        None}``; ``limit`` is 1 to ``audit_page_max`` (its default)."""
        _room(room)
        most = self.ctx.config.audit_page_max
        if limit is None:
            limit = most
        if type(limit) is not int or not 1 <= limit <= most:
            raise InvalidRequest(f"limit must be a whole number from 1 to {most}")
        if before is not None and (type(before) is not str or not 0 < len(before) <= 64):
            raise InvalidRequest("before must be an audit entry's id")
        return self.moderation.audit(room, before=before, limit=limit)

    # -- the webhook dead-letter queue -----------------------------------------------------------

    def dead_letters(
        self,
        *,
        limit: int = DEAD_PAGE_DEFAULT,
        after: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """A page of the webhook dead-letter queue, in key order (about time order):
        ``{"dead": [entry, ...], "next": key or None}``; ``next`` is the ``after`` of the
        following page. ``limit`` is 1 to ``DEAD_PAGE_MAX``."""
        if type(limit) is not int or not 1 <= limit <= DEAD_PAGE_MAX:
            raise InvalidRequest(f"limit must be a whole number from 1 to {DEAD_PAGE_MAX}")
        if after is not None:
            _dead_key(after, "after")

        def run(store: Store) -> list[OutboxEntry]:
            return store.dead_list(limit=limit + 1, after=after)

        entries: list[OutboxEntry] = self._outbox(run, timeout)
        page = entries[:limit]
        more = len(entries) > limit
        return {"dead": [e.as_json() for e in page], "next": page[-1].key if more else None}

    def retry_dead_letter(self, key: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """Send the dead entry ``key`` back to the outbox, due now, its attempts counted
        afresh; False when no dead entry has that key."""
        _dead_key(key, "id")
        now_ms = int(time.time() * 1000)
        retried: bool = self._outbox(lambda store: store.dead_retry(key, now_ms=now_ms), timeout)
        return retried

    def delete_dead_letter(self, key: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """Delete the dead entry ``key``; False when no dead entry has that key."""
        _dead_key(key, "id")
        deleted: bool = self._outbox(lambda store: store.dead_delete(key), timeout)
        return deleted

    def _outbox(self, run: Callable[[Store], Any], timeout: float) -> Any:
        result, done = _waiter()
        self.ctx.refs.tell_store(OutboxRequest(run, _RunHere(), done))
        return result.get(timeout=timeout)


def _until(until_ms: int) -> int | None:
    return None if until_ms == FOREVER_MS else until_ms


def _dead_key(key: object, field: str) -> str:
    if type(key) is not str or not 0 < len(key) <= MAX_DEAD_KEY_CHARS:
        raise InvalidRequest(
            f"{field} must be a dead entry's id (1-{MAX_DEAD_KEY_CHARS} characters)"
        )
    return key
