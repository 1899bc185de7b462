"""``PresenceActor``: who is online, announced to watchers once per change, with a grace period.

The decisions are in ``PresenceBook`` (pure); this actor feeds it connection events with the
time, sends the announcements to watching links, and keeps one timer for the next grace
deadline. It keeps no state that matters across a crash: a restarted tracker rebuilds the book
from the node's live links and their watch lists.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actorim.domain.heard import Heard
from actorim.domain.presence import (
    OFFLINE,
    ONLINE,
    Announcement,
    PresenceBook,
    Status,
    WatchLimitError,
)
from actorim.domain.session import WatchChanged
from actorim.protocol.errors import ErrorCode
from actorim.protocol.webhooks import Webhooks
from actorim.protocol.wire import WireFrame
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.faults import FaultInjectable
from actorim.runtime.link import Link, Phase
from actorim.runtime.messages import (
    Call,
    Offline,
    Online,
    OutboxRequest,
    PresenceQuery,
    RemoteEvent,
    Resync,
    Statuses,
    WatchChange,
    call_later,
)
from actorim.store.base import Store
from supervisors import GeventActor

# What the tracker of a stopping node drops (``NodeContext.stopping``): the comings and goings
# of connections closed by now, each a Redis round trip in a cluster; the node's records leave
# Redis with the node, and its users are announced offline from there.
_DROPPED_WHEN_STOPPING = (Online, Offline, RemoteEvent, Resync)

__all__ = ["PresenceActor"]

logger = logging.getLogger("actorim.presence")


class PresenceActor(FaultInjectable, GeventActor):
    """See the module docstring."""

    fault_kind = fault_subject = "presence"

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.book: PresenceBook[Link] = PresenceBook(grace_s=ctx.config.presence_grace)
        self._webhooks = Webhooks(ctx.config.webhooks)
        # In a cluster: the status this node's watchers were last told, per watched user.
        self.heard: Heard[str, Status] = Heard()
        self._timer: Any = None
        self._timer_due: float | None = None

    def on_start(self) -> None:
        now = time.time()
        live = [
            (link, link.user)
            for link in self.ctx.directory.links.values()
            if link.phase is Phase.CONNECTED and link.user is not None
        ]
        self._announce(self.book.rebuild(((user, link) for link, user in live), now))
        for link, _user in live:
            # With the changes its connection was told and has not applied yet.
            watching = link.session.watching_after(link.notices)
            if watching:
                self.book.watch(link, watching)
        self.ctx.refs.presence = self.actor_ref
        self._arm()

    def on_stop(self) -> None:
        self._disarm()
        self.ctx.refs.presence = None
        if self.ctx.stopping:
            # The node stops: its registry takes its records out at once and announces its
            # users offline from there, a round trip for all instead of one for each of the
            # thousands whose grace began in the drain.
            return
        # Restarting: users whose grace is running are announced now (by a broker that
        # announces for the nodes it connects), not never.
        for user in self.book.online_users():
            if not self.book.connections_of(user):
                self.ctx.broker.settle(user)

    def on_failure(self, *exc_info: object) -> None:
        self.on_stop()
        super().on_failure(*exc_info)

    def on_receive(self, message: Any) -> Any:
        if self.ctx.stopping and isinstance(message, _DROPPED_WHEN_STOPPING):
            return None
        now = time.time()
        book = self.book
        broker = self.ctx.broker
        if isinstance(message, Online):
            link = message.link
            assert link.user is not None
            self._announce(book.connected(link.user, link, now))
            broker.connected(link.user, link.session.token, link.remote)
        elif isinstance(message, Offline):
            link = message.link
            if link.user is not None:
                self._announce(book.disconnected(link.user, link, now))
                broker.disconnected(link.user, link.session.token)
            book.drop_watcher(link)
            self.heard.forget(u for u in link.watching if not book.watchers_of(u))
        elif isinstance(message, PresenceQuery):
            statuses = self._statuses(message.users)
            message.link.reply("presence", message.command_id, {"statuses": statuses})
        elif isinstance(message, Statuses):
            message.done(self._statuses(message.users))
        elif isinstance(message, RemoteEvent):
            assert message.user is not None
            watchers = self.book.watchers_of(message.user)
            status = message.frame.obj.get("status")
            ts = message.frame.obj.get("ts")
            if status in (ONLINE, OFFLINE) and type(ts) is int:
                # Every node hears the cluster's announcement; the entries it makes are the
                # same on each, and the store keeps them once.
                self._tell_webhooks(Announcement(message.user, status, ts))
            if watchers and status in (ONLINE, OFFLINE) and self.heard.hear(message.user, status):
                for link in watchers:
                    link.send_frame(message.frame)
        elif isinstance(message, Resync):
            self._resync()
        elif isinstance(message, WatchChange):
            self._watch(message)
        elif isinstance(message, Call):
            message.func(*message.args)
        else:
            return super().on_receive(message)
        self._arm()
        return None

    def _watch(self, change: WatchChange) -> None:
        link = change.link
        if change.watch:
            try:
                self.book.watch(link, change.users)
            except WatchLimitError as exc:
                link.fail(change.command, change.command_id, ErrorCode.FORBIDDEN, str(exc))
                return
            link.notify(WatchChanged(change.users, watch=True))
            self._hear_statuses(change.users)
        else:
            self.book.unwatch(link, change.users)
            link.notify(WatchChanged(change.users, watch=False))
            self.heard.forget(u for u in change.users if not self.book.watchers_of(u))
        link.reply(change.command, change.command_id, {})

    def _statuses(self, users: tuple[str, ...]) -> dict[str, Any]:
        statuses = None
        if self.ctx.broker.healthy:
            statuses = self.ctx.broker.statuses(users)
        if statuses is None:  # one node, or the broker's link away: what this node knows
            statuses = self.book.statuses(users)
        return statuses

    def _hear_statuses(self, users: tuple[str, ...]) -> None:
        """Newly watched users' statuses as the cluster has them: what a watcher would be
        told if it asked, and what an outage's repair compares with."""
        broker = self.ctx.broker
        new = [u for u in users if u not in self.heard]
        if not new or not broker.healthy:
            return
        statuses = broker.statuses(new)
        if statuses is not None:
            self.heard.seed(statuses)

    def _announce(self, announcements: list[Announcement]) -> None:
        if not announcements:
            return
        # The broker publishes them; what it leaves to this node, the tracker tells its
        # watchers (on a cluster, the broker announces once for every node instead).
        for a in self.ctx.broker.announce(announcements):
            self._tell_webhooks(a)
            watchers = self.book.watchers_of(a.user)
            if not watchers:
                continue
            frame = WireFrame({"t": "presence", "user": a.user, "status": a.status, "ts": a.ts_ms})
            for link in watchers:
                link.send_frame(frame)

    def _tell_webhooks(self, announcement: Announcement) -> None:
        """Keep the ``user.online``/``user.offline`` webhook event in the store's outbox."""
        entries = self._webhooks.for_presence(
            announcement.user, announcement.status, announcement.ts_ms
        )
        if not entries:
            return

        def add(store: Store) -> None:
            store.outbox_add(entries)

        def added(_result: Any, error: BaseException | None) -> None:
            if error is not None:
                logger.warning("a presence webhook event was not kept: %s", error)

        try:
            self.ctx.refs.tell_store(OutboxRequest(add, self.actor_ref, added))
        except Unavailable as exc:
            added(None, exc)

    # -- the grace timer -------------------------------------------------------------------------

    def _arm(self) -> None:
        due = self.book.next_deadline()
        if due is None or due == self._timer_due:
            return
        self._disarm()
        self._timer_due = due
        self._timer = call_later(self.actor_ref, max(0.0, due - time.time()), self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
        self._timer = self._timer_due = None

    def _resync(self) -> None:
        # What this actor registered (its book follows Online and Offline in order), not the
        # directory: a link that closed but whose Offline is still queued here counts until then.
        connections: dict[str, list[tuple[str, str | None]]] = {}
        for user in self.book.online_users():
            conns = self.book.connections_of(user)
            if conns:
                connections[user] = [(link.session.token, link.remote) for link in conns]
        if self.ctx.broker.resync_presence(connections):
            self._announce_missed()

    def _announce_missed(self) -> None:
        """After an outage: tell watchers the changes published while this node was deaf."""
        links = list(self.ctx.directory.links.values())
        watched = sorted(set().union(*(link.watching for link in links)))
        statuses = self.ctx.broker.statuses(watched)
        if statuses is None:
            return
        now_ms = int(time.time() * 1000)
        for user, status in self.heard.reconcile(statuses):
            frame = WireFrame({"t": "presence", "user": user, "status": status, "ts": now_ms})
            for link in self.book.watchers_of(user):
                link.send_frame(frame)

    def _expire(self) -> None:
        self._timer = self._timer_due = None
        self._announce(self.book.expire(time.time()))
