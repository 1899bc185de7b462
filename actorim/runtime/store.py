"""``StoreActor``: owns the message store, group-commits sends off the hub, then publishes.

Every send and every receipt (``ack``, ``read``) goes through here. Appends and marks that
arrive while a commit is in flight wait and go into the next transaction together (group
commit), so under load many sends and receipts share one fsync. A commit takes every waiting
send but at most ``receipts_per_commit`` receipts, the rest waiting for the next: a flood of
receipts never stands between a send and its commit for more than one commit. Sends and
receipts are bounded apart (``store_max_pending`` each), so waiting receipts never make a send
answer ``overloaded``.

With ``offload`` (the SQLite store) every backend call runs on one dedicated OS thread
(a :class:`~actorim.runtime.storethread.StoreThread`, handed calls in batches by
:mod:`~actorim.runtime.storecalls`): a slow disk stalls the store's thread, never the hub and
its sockets. The Redis store runs on the hub, where its sockets yield to other greenlets (its
connections belong to the hub's thread), and the memory store never waits. History pages are
read by the backend and turned into finished reply frames (bodies decoded, the page encoded)
on a page thread of their own, whatever the backend, so neither the hub nor the commits wait
for that work. A send is answered only after its
transaction committed, and only then is the message published to its room or recipient, so
nobody sees a message the store could still lose.

Every answer goes back to the actor that asked: each request carries ``reply_to`` (the
asker's ref) and ``done``, and the store tells ``Call(done, (result, error))`` to
``reply_to``, so the asker handles its answer in its own turn. No connection, room or
offline-delivery code ever runs inside this actor. Reads are typed requests
(:class:`LastSeq`, :class:`Since`, :class:`PendingFor`, :class:`ReadPage`, :class:`MoveMarker`,
:class:`CountsFor`), one per backend operation, never a method named by a string. A marker
move is a write of its own, outside the group commit: one small row.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

from gevent.event import AsyncResult
from pykka import ActorDeadError

from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.events import message_frame
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.faults import FaultInjectable
from actorim.runtime.messages import (
    Append,
    Call,
    CountsFor,
    GetMessage,
    LastSeq,
    Mark,
    MoveMarker,
    OutboxRequest,
    ReadPage,
    ReadThread,
    ReplyTo,
    RoomsRequest,
    Since,
    StoreRead,
    call_later,
)
from actorim.runtime.storecalls import CallQueue, StoreCall, run_calls
from actorim.runtime.storethread import StoreThread
from actorim.store.base import Batching, Receipt, Store, StoredMessage, StoreUnavailable
from supervisors import GeventActor, MailboxFull

__all__ = ["StoreActor", "StoreFailed", "reply"]

logger = logging.getLogger("actorim.store")


class StoreFailed(Exception):
    """A commit failed: the store actor fails so that its supervisor reopens the backend."""


class StoreActor(FaultInjectable, GeventActor):
    """The single owner of the message store; see the module docstring."""

    fault_kind = "store"
    fault_subject = "the store"

    def __init__(
        self, ctx: NodeContext, open_backend: Callable[[], Store], *, offload: bool = True
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self._open_backend = open_backend
        self._offload = offload
        self._thread: StoreThread | None = None
        self._pages: StoreThread | None = None
        # History pages being read or built, answered Unavailable if this actor stops first.
        self._reading: dict[int, ReadPage | ReadThread] = {}
        # Backend calls waiting for the store thread, handed over in batches (with offload).
        self._calls = CallQueue()
        self.backend: Store | None = None
        # The backend's batch transaction, looked up once: a Protocol isinstance check costs
        # more than the rest of a hand-over.
        self._together: Callable[[], AbstractContextManager[None]] | None = None
        self._pending: list[Append] = []
        self._marks: deque[Mark] = deque()
        self._committing: list[Append | Mark] | None = None
        self._commit_started = 0.0
        self._prune_timer: Any = None

    def on_start(self) -> None:
        if self._offload:
            self._thread = StoreThread("store")
            self._thread.start()
        self._pages = StoreThread("store pages")
        self._pages.start()
        self.backend = self._run_now(self._open_backend)
        self._together = self.backend.together if isinstance(self.backend, Batching) else None
        self.ctx.epoch = self._run_now(self.backend.epoch)
        self.ctx.refs.store = self.actor_ref
        self._schedule_prune()

    def on_stop(self) -> None:
        self.ctx.refs.store = None
        self._cancel_prune()
        while self._committing is not None or self._pending or self._marks:
            if self._committing is None:
                self._commit()
            self._finish_commit_now()
        self._abandon_pages()
        _gone(self._calls.drop(), self._committed)
        self._close_backend()

    def on_failure(self, *exc_info: object) -> None:
        self.ctx.refs.store = None
        super().on_failure(*exc_info)
        self._cancel_prune()
        for entry in [*(self._committing or []), *self._pending, *self._marks]:
            _answer_error(entry, ErrorCode.INTERNAL, _STORE_FAILED)
        self._committing = None
        self._pending = []
        self._marks.clear()
        self._abandon_pages()
        _gone(self._calls.drop(), self._committed)
        self._close_backend()

    # -- messages -------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Append | Mark):
            self._append(message)
        elif isinstance(message, StoreRead):
            self._read(message)
        elif isinstance(message, ReadPage | ReadThread):
            self._read_page(message)
        elif isinstance(message, RoomsRequest):
            self._rooms_request(message)
        elif isinstance(message, Call):
            return message.func(*message.args)
        else:
            return super().on_receive(message)
        return None

    def _link_refusing(self) -> bool:
        """In a cluster: the Redis link's breaker is open, so no store call is made (each would
        wait out the socket timeout if Redis hangs, holding up every other). The cluster's
        store shares the broker's link."""
        return self.ctx.broker.refusing

    def _append(self, append: Append | Mark) -> None:
        """Queue a send or a receipt for the next group commit (starting one if none runs)."""
        if self._link_refusing():
            _answer_error(append, ErrorCode.OVERLOADED, _LINK_DOWN)
            return
        waiting = len(self._marks if isinstance(append, Mark) else self._pending)
        if waiting >= self.ctx.config.store_max_pending:
            _answer_error(append, ErrorCode.OVERLOADED, _STORE_BEHIND)
            return
        if isinstance(append, Mark):
            self._marks.append(append)
        else:
            self._pending.append(append)
        if self._committing is None:
            self._commit()

    def _commit(self) -> None:
        batch: list[Append | Mark] = [*self._pending]
        self._pending = []
        marks = self._marks
        for _ in range(min(len(marks), self.ctx.config.receipts_per_commit)):
            batch.append(marks.popleft())
        self._committing = batch
        self._commit_started = time.perf_counter()
        assert self.backend is not None
        # Alone: the senders' answers wait for no other call, and no call waits for the fsync.
        # First: the senders wait for the call running, not for the history pages queued.
        self._in_background(
            self.backend.write_batch, _split(batch), self._committed, alone=True, first=True
        )

    def _committed(self, result: Any, error: BaseException | None) -> None:
        batch, self._committing = self._committing, None
        if batch is None:
            return
        metrics = self.ctx.metrics
        metrics.commit_latency.observe(time.perf_counter() - self._commit_started)
        metrics.commit_batch.observe(len(batch))
        if error is not None:
            for entry in batch:
                if isinstance(error, StoreUnavailable):
                    _answer_error(entry, ErrorCode.OVERLOADED, _STORE_AWAY)
                else:
                    _answer_error(entry, ErrorCode.INTERNAL, _STORE_FAILED)
            if self.ctx.broker.link_failed("store", error):
                # Redis away: the breaker handles the link; the actor has nothing to reopen.
                if self._pending or self._marks:
                    self._commit()
                return
            what = f"commit of {len(batch)} sends and receipts"
            raise StoreFailed(f"{what} failed: {error}") from error
        self._answer(batch, result)
        if self._pending or self._marks:
            self._commit()

    def _answer(
        self,
        batch: list[Append | Mark],
        result: tuple[list[StoredMessage], list[Receipt | None]],
    ) -> None:
        """Answer each send and receipt of a committed batch, in the batch's order."""
        stored = iter(result[0])
        receipts = iter(result[1])
        for entry in batch:
            if isinstance(entry, Append):
                self._accepted(entry, next(stored))
            else:
                reply(entry.reply_to, entry.done, next(receipts), None)

    def _accepted(self, append: Append, stored: StoredMessage) -> None:
        if stored.refused is not None:
            code, text = _change_refused(stored, self.ctx.config.max_reactions)
            _answer_error(append, code, text)
            return
        if append.link is not None and append.command_id is not None:
            append.link.reply(append.command, append.command_id, _accepted_data(stored))
        reply(append.reply_to, append.done, stored, None)
        if stored.duplicate:
            return
        frame = message_frame(stored, append.body, decoded=True)
        broker = self.ctx.broker
        if stored.room is not None:
            broker.publish_stored(stored.room, stored.seq, frame, append.link)
        else:
            assert stored.to is not None
            if stored.sender == stored.to:
                # A note to oneself: the sending connection has the reply, like any sender.
                broker.publish_to_user(stored.to, frame, mid=stored.mid, origin=append.link)
            else:
                broker.publish_to_user(stored.to, frame, mid=stored.mid)
                broker.publish_to_user(stored.sender, frame, mid=stored.mid, origin=append.link)

    def _read(self, request: StoreRead) -> None:
        """Run one typed read on the store thread; its answer goes back to the asker."""
        if self._link_refusing():
            reply(request.reply_to, request.done, None, Unavailable(_LINK_DOWN))
            return
        backend = self.backend
        assert backend is not None

        def answered(result: Any, error: BaseException | None) -> None:
            reply(request.reply_to, request.done, result, error)

        if isinstance(request, LastSeq):
            self._in_background(backend.last_seq, (request.conv,), answered)
        elif isinstance(request, Since):
            bounds = {"limit": request.limit, "max_bytes": request.max_bytes}
            self._in_background(backend.since, (request.conv, request.seq), answered, bounds)
        elif isinstance(request, GetMessage):
            self._in_background(backend.get, (request.mid,), answered)
        elif isinstance(request, OutboxRequest):
            self._in_background(request.run, (backend,), answered)
        elif isinstance(request, MoveMarker):
            where = (request.user, request.conv, request.seq)
            self._in_background(backend.move_marker, where, answered, {"cap": request.cap})
        elif isinstance(request, CountsFor):
            whose = (request.user, request.convs)
            self._in_background(backend.counts, whose, answered, {"cap": request.cap})
        else:
            page = {"limit": request.limit, "after": request.after}
            self._in_background(backend.pending_for, (request.user,), answered, page)

    def _rooms_request(self, request: RoomsRequest) -> None:
        """Run a membership, room or inbox operation on the store thread, like a read."""
        if self._link_refusing():
            reply(request.reply_to, request.done, None, Unavailable(_LINK_DOWN))
            return
        assert self.backend is not None

        def answered(result: Any, error: BaseException | None) -> None:
            reply(request.reply_to, request.done, result, error)

        self._in_background(request.run, (self.backend,), answered)

    def _read_page(self, request: ReadPage | ReadThread) -> None:
        """Read the page (of history, or of a thread) on the store thread, then build its
        reply on the page thread.

        Every request is answered exactly once, even when this actor stops or fails while
        the page is in the making: its connection waits for the answer before its next page.
        """
        if self._link_refusing():
            reply(request.reply_to, request.done, None, Unavailable(_LINK_DOWN))
            return
        assert self.backend is not None
        key = id(request)
        self._reading[key] = request

        def built(page: Any, error: BaseException | None) -> None:
            if self._reading.pop(key, None) is not None:
                reply(request.reply_to, request.done, page, error)

        def read(result: Any, error: BaseException | None) -> None:
            if error is not None or isinstance(result, CommandError):
                built(None, error or result)
            elif key in self._reading:
                self._in_background(request.build, result, built, pages=True)

        backend = self.backend
        reads: Callable[..., Any] = (
            backend.thread if isinstance(request, ReadThread) else backend.history
        )
        if request.guard is not None:
            reads = _guarded(request, backend, reads)

        self._in_background(
            reads,
            (request.root if isinstance(request, ReadThread) else request.conv,),
            read,
            {
                "before": request.before,
                "after": request.after,
                "limit": request.limit,
                "reader": request.reader,
            },
            alone=True,  # a page may be large: nobody else's answer waits for it
        )

    def _abandon_pages(self) -> None:
        reading, self._reading = self._reading, {}
        for request in reading.values():
            reply(
                request.reply_to,
                request.done,
                None,
                Unavailable("the store restarted; retry in a moment"),
            )

    # -- running backend calls off the hub ------------------------------------------------------

    def _in_background(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], None],
        kwargs: dict[str, Any] | None = None,
        *,
        pages: bool = False,
        alone: bool = False,
        first: bool = False,
    ) -> None:
        """Run ``func`` on the store thread (the page thread if ``pages``); ``done(result,
        error)`` runs in this actor after. ``alone``: in a batch of its own (a commit, a page,
        pruning: long, or awaited by senders), so that no other answer waits for it.
        ``first``: before every other call waiting (the group commit)."""
        if not pages and self._thread is not None:
            self._calls.add(StoreCall(func, args, kwargs or {}, done, alone, first))
            self._hand_over()
            return
        me = self.actor_ref

        def back(value: Any, error: BaseException | None) -> None:
            try:
                me.tell(Call(done, (value, error)))
            except ActorDeadError:
                if done is not self._committed:
                    done(None, Unavailable("the store restarted"))

        thread = self._pages if pages else None
        if thread is not None:
            thread.submit(partial(func, *args, **(kwargs or {})), back)
            return
        try:
            value = func(*args, **(kwargs or {}))
        except Exception as exc:
            back(None, exc)
        else:
            back(value, None)

    def _hand_over(self) -> None:
        """Start the next batch of waiting calls on the store thread, unless one runs."""
        batch = self._calls.next_batch()
        if batch is None:
            return
        assert self._thread is not None
        me = self.actor_ref

        def back(outcomes: Any, error: BaseException | None) -> None:
            if error is not None:
                outcomes = [(None, error)] * len(batch)
            try:
                me.tell(Call(self._handed_back, (batch, outcomes)))
            except ActorDeadError:
                _gone(batch, self._committed)

        self._thread.submit(partial(run_calls, batch, self._together), back)

    def _handed_back(
        self, batch: list[StoreCall], outcomes: list[tuple[Any, BaseException | None]]
    ) -> None:
        """A batch is done: the next one goes to the thread, then each call is answered."""
        self._calls.finished()
        self._hand_over()
        for call, (value, error) in zip(batch, outcomes, strict=True):
            call.done(value, error)

    def _run_now(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func`` on the store thread and wait for it (start-up and shutdown only)."""
        if self._thread is None:
            return func(*args)
        result: AsyncResult = AsyncResult()

        def back(value: Any, error: BaseException | None) -> None:
            if error is None:
                result.set(value)
            else:
                result.set_exception(error)

        self._thread.submit(partial(func, *args), back)
        return result.get()

    def _finish_commit_now(self) -> None:
        batch = self._committing
        if batch is None:
            return
        self._committing = None
        assert self.backend is not None
        try:
            result = self._run_now(self.backend.write_batch, *_split(batch))
        except Exception:
            for entry in batch:
                _answer_error(entry, ErrorCode.INTERNAL, _STORE_FAILED)
            logger.exception("final commit of %d sends and receipts failed", len(batch))
            return
        self._answer(batch, result)

    def _close_backend(self) -> None:
        backend, self.backend = self.backend, None
        self._together = None
        if backend is not None:
            try:
                self._run_now(backend.close)
            except Exception:
                logger.exception("closing the store failed")
        for thread in (self._thread, self._pages):
            if thread is not None:
                thread.stop()
        self._thread = self._pages = None

    # -- retention ------------------------------------------------------------------------------

    def _schedule_prune(self) -> None:
        self._prune_timer = call_later(self.actor_ref, self.ctx.config.prune_interval, self._prune)

    def _cancel_prune(self) -> None:
        if self._prune_timer is not None:
            self._prune_timer.kill(block=False)
            self._prune_timer = None

    def _prune(self) -> None:
        config = self.ctx.config
        assert self.backend is not None
        if self._link_refusing():
            self._schedule_prune()
            return

        def pruned(deleted: Any, error: BaseException | None) -> None:
            if error is not None:
                logger.warning("pruning failed: %s", error)
            elif deleted and self.backend is not None:
                self._prune()  # a full budget: more may be due; sends interleave between calls
                return
            self._schedule_prune()

        self._in_background(
            self.backend.prune,
            (),
            pruned,
            {
                "now_ms": int(time.time() * 1000),
                "max_count": config.retention_count,
                "max_age_ms": config.retention_ms,
            },
            alone=True,
        )


_STORE_FAILED = (
    "the message store failed; the message may not have been stored: send it again with the"
    " same cid"
)
_STORE_AWAY = (
    "the message store is away for a moment or could not confirm the message's copies; send it"
    " again with the same cid in a moment"
)
_STORE_BEHIND = "the message store is behind; retry in a moment"
_LINK_DOWN = "the cluster's link to Redis is down; retry in a few seconds"


def _accepted_data(stored: StoredMessage) -> dict[str, Any]:
    """The reply to a stored send: ``{mid, seq, ts}``, and ``thread`` (its root's mid) for a
    reply. A change is answered with the message it
    changed, its own seq and time, and its conversation (``room``, or ``to`` and ``from``), so
    that a client can file it as it files the change's event."""
    if stored.target is None:
        if stored.thread is not None:
            return {"mid": stored.mid, "seq": stored.seq, "ts": stored.ts, "thread": stored.thread}
        return {"mid": stored.mid, "seq": stored.seq, "ts": stored.ts}
    data: dict[str, Any] = {"mid": stored.target, "seq": stored.seq, "ts": stored.ts}
    if stored.room is not None:
        data["room"] = stored.room
    else:
        data["to"] = stored.to
        data["from"] = stored.sender
    if stored.mid == stored.target:
        # A reaction that changed nothing: no event of its own, seq is the conversation's last.
        data["unchanged"] = True
    return data


def _guarded(
    request: ReadPage | ReadThread, backend: Store, reads: Callable[..., Any]
) -> Callable[..., Any]:
    """``reads`` behind the request's guard: a page's before the read (its room is known), a
    thread's after it (its room is the root's). A refusal is returned as the read's
    result, not raised: the read's answer carries it to the asker."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if isinstance(request, ReadPage):
            assert request.guard is not None
            refusal = request.guard(backend)
            return refusal if refusal is not None else reads(*args, **kwargs)
        assert request.guard is not None
        result = reads(*args, **kwargs)
        refusal = request.guard(backend, result[0])
        return refusal if refusal is not None else result

    return guarded


def _change_refused(stored: StoredMessage, max_reactions: int) -> tuple[ErrorCode, str]:
    """The error a change or a reply the store did not make is answered with."""
    if stored.target is None:
        if stored.refused == "deleted":
            return ErrorCode.NOT_FOUND, (
                f"message {stored.reply_to!r} was deleted; it cannot be replied to"
            )
        return (
            ErrorCode.NOT_FOUND,
            f"no message {stored.reply_to!r} in this conversation to reply to",
        )
    if stored.refused == "deleted":
        return ErrorCode.NOT_FOUND, f"message {stored.target!r} was deleted; it cannot be changed"
    if stored.refused == "too_many_reactions":
        return ErrorCode.TOO_MANY_REACTIONS, (
            f"message {stored.target!r} has as many different reactions as it may"
            f" ({max_reactions}); react with one of its keys, or ask someone to remove one"
        )
    return ErrorCode.NOT_FOUND, f"no message {stored.target!r} in this conversation"


def _split(batch: list[Append | Mark]) -> tuple[list[Any], list[tuple[str, str, Any]]]:
    """A batch as ``write_batch`` takes it: the new messages, then the marks, each in order."""
    messages = [entry.message for entry in batch if isinstance(entry, Append)]
    marks = [(e.mid, e.user, e.status) for e in batch if isinstance(e, Mark)]
    return messages, marks


def _answer_error(entry: Append | Mark, code: ErrorCode, message: str) -> None:
    if isinstance(entry, Mark):
        failed = Unavailable if code is ErrorCode.OVERLOADED else StoreFailed
        reply(entry.reply_to, entry.done, None, failed(message))
        return
    if entry.link is not None and entry.command_id is not None:
        entry.link.fail(entry.command, entry.command_id, code, message)
    reply(entry.reply_to, entry.done, None, Unavailable(message))


def reply(
    to: ReplyTo | None,
    done: Callable[[Any, BaseException | None], None] | None,
    result: Any,
    error: BaseException | None,
) -> None:
    """Send an answer back to the actor that asked, to run ``done(result, error)`` in its
    own turn. An asker that is gone (or swamped beyond its mailbox) loses the answer: it was
    asked for by an actor that can no longer use it."""
    if to is None or done is None:
        return
    try:
        to.tell(Call(done, (result, error)))
    except (ActorDeadError, MailboxFull):
        logger.debug("an answer from the store found its asker gone")


def _gone(calls: list[StoreCall], committed: Callable[..., None]) -> None:
    """Answer calls whose result can no longer reach the actor: it stopped or restarted (a
    commit's answer is the actor's own, and its senders are answered by ``on_failure``)."""
    for call in calls:
        if call.done is not committed:
            call.done(None, Unavailable("the store restarted"))
