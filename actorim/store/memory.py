"""The message store held in memory: every promise of the Store contract but durability.

Use it when nothing needs to outlive the process: to measure the server with persistence off, to
embed a store in tests, and as the reference model the durable backends are checked against.
Everything is lost when the process ends; each instance makes a new epoch, so clients of a
restarted server learn that ``seq`` restarted.

Costs, for a store holding n messages: ``append_batch`` is O(1) per message (O(log n) for one
stamped earlier than the newest), ``since`` and ``history`` are O(log n + limit) (a bisection of
the conversation's list; ``history`` also steps over the edits and deletes among the page's
messages), ``get``, ``mark`` and an edit are O(1), a delete O(edits of its message), and
``pending_for`` is O(limit) while a recipient's direct messages arrive in time order (one that
arrives out of order costs a re-sort of that recipient's pending set at the next read); with
``after`` it is O(log n + limit) while the pending set is unchanged between pages, and O(n) for
the page after a change to it.
``thread`` is O(log r + limit) for a thread of r replies, and a reply that is deleted or
pruned costs O(r) at worst (its root's summary looks for the latest reply still counted).
``counts`` is O(log n) per conversation plus the messages read up to the cap (the user's own
among them stepped over), and ``move_marker`` the same for its one conversation.
``authored_conversations`` is O(k log k) for a user who wrote in k conversations (a count per
user and conversation, kept by appends, deletes and pruning).
``prune`` is O(log n) per message removed, plus a look at each conversation appended to since
the previous prune (at every conversation when ``max_count`` differs from the previous call's).

>>> store = MemoryStore()
>>> send = NewMessage("r:lobby", "alice", "text", b"hi", ts=1_000, cid="c1", room="lobby")
>>> [first] = store.append_batch([send])
>>> [again] = store.append_batch([send])
>>> first.seq, again.duplicate, again.mid == first.mid
(1, True, True)
>>> store.close()
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter

from actorim.domain.moderation import AuditEntry, Standing
from actorim.domain.rooms import JoinOutcome, RoomInfo
from actorim.store.base import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    DEFAULT_PRUNE_BUDGET,
    DELETE,
    REACT,
    REACTION_KINDS,
    RECEIPT_LEVELS,
    Counts,
    NewMessage,
    OutboxEntry,
    OutboxFor,
    Receipt,
    ReceiptStatus,
    Store,
    StoredMessage,
    StoreError,
    advanced,
    applied,
    bounded_page,
    change_refusal,
    check_cap,
    check_limit,
    check_new_message,
    check_prune,
    check_statuses,
    mid_ms,
    new_mid,
    reaction_refusal,
    reaction_summary,
    refused,
    reply_refusal,
    thread_of,
    thread_summary,
    unchanged,
)
from actorim.store.moderationbook import ModerationBook
from actorim.store.outbox import MemoryOutbox
from actorim.store.roombook import RoomBook

__all__ = ["MemoryStore"]

_PENDING, _DELIVERED, _READ = 0, 1, 2

_seq_of = attrgetter("msg.seq")


@dataclass(slots=True, eq=False)
class _Record:
    """A stored message with its delivery state, shared by every index that finds it.

    ``order`` counts appends across the whole store: the tie-break, after ``ts`` (and ``seq``
    for pending messages), that makes "oldest first" a total order. ``receipt`` is None for
    room messages. ``retained`` turns False when the message is pruned, so the age heap can
    skip the entries it still holds for it.
    """

    msg: StoredMessage
    order: int
    receipt: int | None
    retained: bool = True
    reactions: dict[str, set[str]] | None = None
    """Each key on the message, in the order first chosen, with the users who chose it."""
    replies: _Thread | None = None
    """A root's thread: what its summary counts."""


@dataclass(slots=True)
class _Thread:
    """The replies a root's summary counts (neither deleted nor pruned): how many, the time of
    the latest, and each author's number of them, in the order the authors joined."""

    count: int = 0
    last_ts: int = 0
    authors: dict[str, int] = field(default_factory=dict)


def _pending_key(record: _Record) -> tuple[int, int, int]:
    return (record.msg.ts, record.msg.seq, record.order)


class _Conversation:
    """A conversation's retained messages in ``seq`` order, and the last ``seq`` it gave.

    ``records[head:]`` are retained. Pruning takes the oldest messages, so it only moves
    ``head``; the dead prefix is cut once it is at least half the list, which keeps each
    removal O(1) amortised. ``seq`` increases along the list, with gaps only where retention
    removed a message.
    """

    __slots__ = ("head", "last_seq", "records")

    def __init__(self) -> None:
        self.records: list[_Record] = []
        self.head = 0
        self.last_seq = 0

    def index_after(self, seq: int) -> int:
        """The index of the first retained message with a seq above ``seq``."""
        return bisect_right(self.records, seq, lo=self.head, key=_seq_of)

    def index_from(self, seq: int) -> int:
        """The index of the first retained message with a seq of ``seq`` or above."""
        return bisect_left(self.records, seq, lo=self.head, key=_seq_of)

    def drop_oldest(self, count: int) -> None:
        self.head += count
        if self.head * 2 >= len(self.records):
            del self.records[: self.head]
            self.head = 0

    def drop(self, record: _Record) -> None:
        """Remove ``record``: the oldest, unless the clock went back within the conversation."""
        if self.records[self.head] is record:
            self.drop_oldest(1)
            return
        index = self.index_from(record.msg.seq)
        assert self.records[index] is record
        del self.records[index]


class _Pending:
    """A recipient's pending direct messages, by mid, oldest first once ``ordered``.

    Direct messages almost always arrive in time order, so appending keeps the dict ordered by
    (ts, seq, order) and a page is read straight off its front. One that arrives out of order
    clears ``ordered``, and the next read sorts the dict once.
    """

    __slots__ = ("_index", "newest", "ordered", "records")

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self.newest = (-1, -1, -1)
        self.ordered = True
        # The records as a list, for bisecting to a page's start; rebuilt after any change.
        self._index: list[_Record] | None = None

    def add(self, record: _Record) -> None:
        key = _pending_key(record)
        if key < self.newest:
            self.ordered = False
        else:
            self.newest = key
        self.records[record.msg.mid] = record
        self._index = None

    def remove(self, mid: str) -> None:
        del self.records[mid]
        self._index = None

    def oldest(self, limit: int, after: tuple[int, int, int] | None = None) -> list[StoredMessage]:
        """The first ``limit`` records, or the first ``limit`` whose key is above ``after``."""
        if not self.ordered:
            ordered = sorted(self.records.values(), key=_pending_key)
            self.records = {record.msg.mid: record for record in ordered}
            self.ordered = True
            self._index = None
        if after is None:
            return [record.msg for record in itertools.islice(self.records.values(), limit)]
        if self._index is None:
            self._index = list(self.records.values())
        start = bisect_right(self._index, after, key=_pending_key)
        return [record.msg for record in self._index[start : start + limit]]


class MemoryStore(Store):
    """The message store in this process's memory; see the module docstring for when to use it.

    Like every store it is used by one thread at a time.
    """

    def __init__(self, *, outbox: OutboxFor | None = None) -> None:
        self._epoch = secrets.token_hex(8)
        # Webhooks: what each stored message adds to the outbox, and the outbox itself.
        self._outbox_for = outbox
        self._outbox = MemoryOutbox()
        self._closed = False
        self._orders = itertools.count()
        self._conversations: dict[str, _Conversation] = {}
        self._by_mid: dict[str, _Record] = {}
        self._by_cid: dict[tuple[str, str, str], _Record] = {}
        self._pending: dict[str, _Pending] = {}
        # Each edited message's edit events, whose bodies a delete erases.
        self._edits: dict[str, list[_Record]] = {}
        # Each thread's retained replies in seq order, by the mid of its root.
        self._threads: dict[str, list[_Record]] = {}
        # A heap of (ts, order, record): the next message age pruning removes is on top. Server
        # timestamps rarely go backwards, so a push usually stops after one comparison.
        self._by_age: list[tuple[int, int, _Record]] = []
        # Entries of _by_age whose message was pruned by count; cut once they are half the heap.
        self._stale_in_age = 0
        # Conversations that may hold more than `_count_checked_for` messages: those the last
        # prune could not finish, and those appended to since. Dicts, for a stable order.
        self._count_checked_for: int | None = None
        self._over_count: dict[str, None] = {}
        self._appended: dict[str, None] = {}
        self._rooms = RoomBook()
        self._moderation = ModerationBook()
        # Read markers by (user, conv); and by (user, conv) the seqs of the retained, undeleted
        # messages that mention the user, ascending (appends come in seq order).
        self._markers: dict[tuple[str, str], int] = {}
        self._mentioned: dict[tuple[str, str], list[int]] = {}
        # By user, each conversation where they have live messages (neither changes nor
        # deleted nor pruned) and how many: what ``authored_conversations`` reads.
        self._authored: dict[str, dict[str, int]] = {}

    def _live(self) -> None:
        if self._closed:
            raise StoreError("the in-memory message store is closed; create a new MemoryStore")

    # -- the Store interface ----------------------------------------------------------------

    def epoch(self) -> str:
        self._live()
        return self._epoch

    def append_batch(self, msgs: Sequence[NewMessage]) -> list[StoredMessage]:
        for msg in msgs:
            check_new_message(msg)
        self._live()
        results: list[StoredMessage] = []
        for msg in msgs:
            if msg.cid is not None:
                original = self._by_cid.get((msg.sender, msg.conv, msg.cid))
                if original is not None:
                    results.append(replace(original.msg, duplicate=True))
                    continue
            if msg.target is not None:
                result = self._change(msg)
            elif msg.reply_to is not None:
                result = self._reply(msg)
            else:
                result = self._append(msg)
            results.append(result)
            if self._outbox_for is not None and result.refused is None and not result.duplicate:
                self._outbox.add(self._outbox_for(result))
        return results

    def _reply(self, msg: NewMessage) -> StoredMessage:
        """Store a reply in its thread and count it in its root's summary (see ``Store``)."""
        assert msg.reply_to is not None
        parent = self._by_mid.get(msg.reply_to)
        reason = reply_refusal(msg, None if parent is None else parent.msg)
        if reason is not None:
            return refused(msg, reason)
        assert parent is not None
        thread = thread_of(parent.msg)
        stored = self._append(msg, thread=thread)
        record = self._by_mid[stored.mid]
        self._threads.setdefault(thread, []).append(record)
        root = self._by_mid.get(thread)
        if root is not None:
            summary = root.replies if root.replies is not None else _Thread()
            summary.count += 1
            summary.last_ts = stored.ts
            summary.authors[stored.sender] = summary.authors.get(stored.sender, 0) + 1
            root.replies = summary
        return stored

    def _uncount(self, reply: StoredMessage) -> None:
        """Take a reply that was deleted or pruned out of its root's summary."""
        assert reply.thread is not None
        root = self._by_mid.get(reply.thread)
        if root is None or root.replies is None:
            return
        summary = root.replies
        summary.count -= 1
        left = summary.authors[reply.sender] - 1
        if left:
            summary.authors[reply.sender] = left
        else:
            del summary.authors[reply.sender]
        if summary.count == 0:
            root.replies = None
            return
        for record in reversed(self._threads[reply.thread]):
            if not record.msg.deleted and record.msg is not reply:
                summary.last_ts = record.msg.ts
                return

    def _change(self, change: NewMessage) -> StoredMessage:
        """Store an edit or delete event and change its message in place (see ``Store``)."""
        assert change.target is not None
        record = self._by_mid.get(change.target)
        reason = change_refusal(change, None if record is None else record.msg)
        if reason is not None:
            return refused(change, reason)
        assert record is not None
        if change.kind in REACTION_KINDS:
            return self._react(change, record)
        event = self._append(change)
        if change.kind == DELETE:
            self._unmention(record.msg)
            self._unauthor(record.msg)
        record.msg = applied(change, record.msg)
        if record.msg.deleted:
            record.reactions = None
            if record.msg.thread is not None:
                self._uncount(record.msg)
            for edit in self._edits.pop(change.target, ()):
                edit.msg = replace(edit.msg, body=b"", deleted=True)
        else:
            self._edits.setdefault(change.target, []).append(self._by_mid[event.mid])
        return event

    def _react(self, change: NewMessage, record: _Record) -> StoredMessage:
        """Store a reaction that changes the message's reactions; answer one that does not."""
        keys = record.reactions if record.reactions is not None else {}
        reason = reaction_refusal(change, keys)
        if reason is not None:
            return refused(change, reason)
        key = change.body.decode()
        users = keys.get(key, set())
        if (change.sender in users) == (change.kind == REACT):
            return unchanged(change, self._conversations[change.conv].last_seq)
        if change.kind == REACT:
            users.add(change.sender)
            keys[key] = users
        else:
            users.discard(change.sender)
            if not users:
                del keys[key]
        record.reactions = keys or None
        return self._append(change)

    def _append(self, msg: NewMessage, *, thread: str | None = None) -> StoredMessage:
        conversation = self._conversations.get(msg.conv)
        if conversation is None:
            conversation = self._conversations[msg.conv] = _Conversation()
        conversation.last_seq += 1
        mid = new_mid(msg.ts)
        while mid in self._by_mid:
            mid = new_mid(msg.ts)
        stored = StoredMessage(
            mid,
            msg.conv,
            conversation.last_seq,
            msg.ts,
            msg.sender,
            msg.kind,
            msg.body,
            msg.cid,
            msg.room,
            msg.to,
            target=msg.target,
            reply_to=msg.reply_to,
            thread=thread,
            mentions=msg.mentions,
        )
        for user in msg.mentions:
            self._mentioned.setdefault((user, msg.conv), []).append(stored.seq)
        direct = msg.to is not None and msg.target is None
        record = _Record(stored, next(self._orders), _PENDING if direct else None)
        conversation.records.append(record)
        self._by_mid[mid] = record
        if msg.cid is not None:
            self._by_cid[(msg.sender, msg.conv, msg.cid)] = record
        if direct and msg.to is not None:
            self._rooms.met(msg.sender, msg.to)
            pending = self._pending.get(msg.to)
            if pending is None:
                pending = self._pending[msg.to] = _Pending()
            pending.add(record)
        if msg.target is None:
            convs = self._authored.setdefault(msg.sender, {})
            convs[msg.conv] = convs.get(msg.conv, 0) + 1
        heapq.heappush(self._by_age, (msg.ts, record.order, record))
        self._appended[msg.conv] = None
        return stored

    def last_seq(self, conv: str) -> int:
        self._live()
        conversation = self._conversations.get(conv)
        return 0 if conversation is None else conversation.last_seq

    def since(
        self, conv: str, seq: int, *, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        check_limit(limit)
        self._live()
        conversation = self._conversations.get(conv)
        if conversation is None:
            page: list[StoredMessage] = []
            cut = False
            last = 0
        else:
            records = conversation.records
            # By index, not islice: islice would step through every record before the first.
            missed = (records[i].msg for i in range(conversation.index_after(seq), len(records)))
            page, cut = bounded_page(missed, limit=limit, max_bytes=max_bytes)
            last = conversation.last_seq
        # Seqs were given without gaps, so the page is everything after `seq` exactly when it
        # holds as many messages as were ever given after it.
        return page, not cut and len(page) == max(0, last - seq)

    def authored(self, conv: str, sender: str, *, limit: int) -> list[StoredMessage]:
        check_limit(limit)
        self._live()
        conversation = self._conversations.get(conv)
        if conversation is None:
            return []
        records = conversation.records
        found: list[StoredMessage] = []
        for index in range(conversation.head, len(records)):
            message = records[index].msg
            if message.sender == sender and message.target is None and not message.deleted:
                found.append(replace(self._as_read(records[index], None), reactions=()))
                if len(found) == limit:
                    break
        return found

    def authored_conversations(self, user: str, *, limit: int) -> list[str]:
        check_limit(limit)
        self._live()
        return sorted(self._authored.get(user, ()))[:limit]

    def history(
        self,
        conv: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        check_limit(limit)
        self._live()
        conversation = self._conversations.get(conv)
        if conversation is None:
            return [], False
        records = conversation.records
        low = conversation.head if after is None else conversation.index_after(after)
        high = len(records) if before is None else conversation.index_from(before)
        return self._page(records, low, high, newest=after is None, limit=limit, reader=reader)

    def _page(
        self,
        records: list[_Record],
        low: int,
        high: int,
        *,
        newest: bool,
        limit: int,
        reader: str | None,
    ) -> tuple[list[StoredMessage], bool]:
        """The messages among ``records[low:high]`` (its newest ``limit`` when ``newest``, else
        its oldest), each as ``reader`` sees it, and whether more lie beyond them."""
        # Messages only: the changes among them are skipped (their effect is in the messages).
        indices = range(high - 1, low - 1, -1) if newest else range(low, high)
        page: list[StoredMessage] = []
        more = False
        for index in indices:
            record = records[index]
            if record.msg.target is None:
                if len(page) == limit:
                    more = True
                    break
                page.append(self._as_read(record, reader))
        if newest:
            page.reverse()
        return page, more

    @staticmethod
    def _as_read(record: _Record, reader: str | None) -> StoredMessage:
        """A message as ``history`` shows it: with its reactions and its thread's summary."""
        message = record.msg
        if record.reactions:
            message = replace(message, reactions=reaction_summary(record.reactions.items(), reader))
        summary = record.replies
        if summary is not None:
            found = thread_summary(summary.count, summary.last_ts, summary.authors)
            message = replace(message, thread_summary=found)
        return message

    def get(self, mid: str) -> StoredMessage | None:
        self._live()
        record = self._by_mid.get(mid)
        if record is None:
            return None
        return replace(self._as_read(record, None), reactions=())

    def thread(
        self,
        root: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[StoredMessage | None, list[StoredMessage], bool]:
        check_limit(limit)
        self._live()
        record = self._by_mid.get(root)
        if record is None or record.msg.target is not None or record.msg.thread is not None:
            return None, [], False
        replies = self._threads.get(root, [])
        low = 0 if after is None else bisect_right(replies, after, key=_seq_of)
        high = len(replies) if before is None else bisect_left(replies, before, key=_seq_of)
        page, more = self._page(
            replies, low, high, newest=after is None, limit=limit, reader=reader
        )
        return self._as_read(record, reader), page, more

    def pending_for(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[StoredMessage]:
        check_limit(limit)
        self._live()
        pending = self._pending.get(user)
        if pending is None:
            return []
        if after is None:
            return pending.oldest(limit)
        record = self._by_mid.get(after)
        # A cursor message that retention removed: resume at its millisecond (see the contract).
        key = _pending_key(record) if record is not None else (mid_ms(after), -1, -1)
        return pending.oldest(limit, key)

    def mark(self, mid: str, user: str, status: ReceiptStatus) -> Receipt | None:
        return self.mark_batch([(mid, user, status)])[0]

    def mark_batch(self, marks: Sequence[tuple[str, str, ReceiptStatus]]) -> list[Receipt | None]:
        check_statuses(marks)
        self._live()
        receipts: list[Receipt | None] = []
        for mid, user, status in marks:
            level = RECEIPT_LEVELS[status]
            record = self._by_mid.get(mid)
            if (
                record is None
                or record.msg.to != user
                or record.receipt is None
                or record.receipt >= level
            ):
                receipts.append(None)
                continue
            if record.receipt == _PENDING:
                self._unpend(record)
            record.receipt = level
            receipts.append(Receipt(mid, record.msg.sender, user, status))
        return receipts

    def prune(
        self,
        *,
        now_ms: int,
        max_count: int = DEFAULT_MAX_COUNT,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        budget: int = DEFAULT_PRUNE_BUDGET,
    ) -> int:
        check_prune(max_count=max_count, max_age_ms=max_age_ms, budget=budget)
        self._live()
        cutoff = now_ms - max_age_ms
        by_age = self._by_age
        deleted = 0
        while deleted < budget and by_age and by_age[0][0] < cutoff:
            _, _, record = heapq.heappop(by_age)
            if not record.retained:
                self._stale_in_age -= 1
                continue
            self._conversations[record.msg.conv].drop(record)
            self._forget(record)
            deleted += 1
        if deleted < budget:
            deleted += self._prune_by_count(max_count, budget - deleted)
        if self._stale_in_age * 2 > len(by_age):
            self._by_age = [entry for entry in by_age if entry[2].retained]
            heapq.heapify(self._by_age)
            self._stale_in_age = 0
        return deleted

    def _prune_by_count(self, max_count: int, budget: int) -> int:
        """Remove, within ``budget``, messages more than ``max_count`` seqs behind their newest."""
        if max_count == self._count_checked_for:
            candidates = list(self._over_count)
            candidates.extend(conv for conv in self._appended if conv not in self._over_count)
        else:
            candidates = list(self._conversations)
        self._count_checked_for = max_count
        self._appended = {}
        still_over: dict[str, None] = {}
        deleted = 0
        for conv in candidates:
            if deleted == budget:
                still_over[conv] = None
                continue
            conversation = self._conversations[conv]
            head = conversation.head
            excess = conversation.index_after(conversation.last_seq - max_count) - head
            taken = min(excess, budget - deleted)
            for record in conversation.records[head : head + taken]:
                self._forget(record)
            self._stale_in_age += taken
            conversation.drop_oldest(taken)
            deleted += taken
            if taken < excess:
                still_over[conv] = None
        self._over_count = still_over
        return deleted

    def _forget(self, record: _Record) -> None:
        """Drop a pruned message from every index but its conversation's list."""
        record.retained = False
        msg = record.msg
        self._unmention(msg)
        if msg.target is None and not msg.deleted:
            self._unauthor(msg)
        del self._by_mid[msg.mid]
        self._edits.pop(msg.mid, None)
        if msg.thread is not None:
            replies = self._threads[msg.thread]
            replies.pop(bisect_left(replies, msg.seq, key=_seq_of))
            if not msg.deleted:
                self._uncount(msg)
            if not replies:
                del self._threads[msg.thread]
        if msg.cid is not None:
            del self._by_cid[(msg.sender, msg.conv, msg.cid)]
        if record.receipt == _PENDING:
            self._unpend(record)

    def _unmention(self, msg: StoredMessage) -> None:
        """Take a deleted or pruned message out of its mentioned users' counts."""
        for user in msg.mentions:
            seqs = self._mentioned[(user, msg.conv)]
            del seqs[bisect_left(seqs, msg.seq)]
            if not seqs:
                del self._mentioned[(user, msg.conv)]

    def _unauthor(self, msg: StoredMessage) -> None:
        """Take a deleted or pruned message out of its author's conversations."""
        convs = self._authored[msg.sender]
        left = convs[msg.conv] - 1
        if left:
            convs[msg.conv] = left
            return
        del convs[msg.conv]
        if not convs:
            del self._authored[msg.sender]

    def move_marker(self, user: str, conv: str, seq: int, *, cap: int) -> tuple[Counts, bool]:
        check_cap(cap)
        self._live()
        key = (user, conv)
        old = self._markers.get(key, 0)
        new = advanced(old, seq, self.last_seq(conv))
        if new != old:
            self._markers[key] = new
        return self._counts(user, conv, cap), new != old

    def counts(self, user: str, convs: Sequence[str], *, cap: int) -> dict[str, Counts]:
        check_cap(cap)
        self._live()
        return {conv: self._counts(user, conv, cap) for conv in convs}

    def _counts(self, user: str, conv: str, cap: int) -> Counts:
        """O(log n + the messages read up to the cap): the user's own messages among them are
        stepped over, the rest counted until the cap."""
        marker = self._markers.get((user, conv), 0)
        conversation = self._conversations.get(conv)
        if conversation is None:
            return Counts(0, marker, 0, 0)
        unread = 0
        records = conversation.records
        for index in range(conversation.index_after(marker), len(records)):
            msg = records[index].msg
            if msg.target is None and not msg.deleted and msg.sender != user:
                unread += 1
                if unread == cap:
                    break
        seqs = self._mentioned.get((user, conv), [])
        mentions = min(cap, len(seqs) - bisect_right(seqs, marker))
        return Counts(conversation.last_seq, marker, unread, mentions)

    def _unpend(self, record: _Record) -> None:
        recipient = record.msg.to
        assert recipient is not None
        pending = self._pending[recipient]
        pending.remove(record.msg.mid)
        if not pending.records:
            del self._pending[recipient]

    # -- the webhook outbox ---------------------------------------------------------------------

    def outbox_add(self, entries: Sequence[OutboxEntry]) -> None:
        self._live()
        self._outbox.add(entries)

    def outbox_due(
        self, endpoint: str, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[OutboxEntry]:
        check_limit(limit)
        self._live()
        return self._outbox.due(endpoint, now_ms=now_ms, limit=limit, lease_ms=lease_ms)

    def outbox_done(self, entry: OutboxEntry) -> None:
        self._live()
        self._outbox.done(entry.key)

    def outbox_retry(self, entry: OutboxEntry) -> None:
        self._live()
        self._outbox.keep(entry)

    def outbox_bury(self, entry: OutboxEntry) -> None:
        self._live()
        self._outbox.keep(entry)

    def dead_list(self, *, limit: int, after: str | None = None) -> list[OutboxEntry]:
        check_limit(limit)
        self._live()
        return self._outbox.dead(limit=limit, after=after)

    def dead_retry(self, key: str, *, now_ms: int) -> bool:
        self._live()
        return self._outbox.revive(key, now_ms=now_ms)

    def dead_delete(self, key: str) -> bool:
        self._live()
        return self._outbox.delete_dead(key)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._outbox.clear()
        self._conversations.clear()
        self._by_mid.clear()
        self._by_cid.clear()
        self._pending.clear()
        self._edits.clear()
        self._threads.clear()
        self._by_age.clear()
        self._over_count.clear()
        self._appended.clear()
        self._rooms.clear()
        self._markers.clear()
        self._mentioned.clear()

    # -- membership and rooms: the RoomBook --------------------------------------------------

    def join_room(self, user: str, room: str, *, max_rooms: int) -> JoinOutcome:
        self._live()
        return self._rooms.join_room(user, room, max_rooms=max_rooms)

    def leave_room(self, user: str, room: str) -> bool:
        self._live()
        return self._rooms.leave_room(user, room)

    def rooms_of(self, user: str) -> list[str]:
        self._live()
        return self._rooms.rooms_of(user)

    def members_of(
        self, room: str, *, after: str | None = None, limit: int
    ) -> tuple[list[str], bool]:
        self._live()
        check_limit(limit)
        return self._rooms.members_of(room, after=after, limit=limit)

    def room_info(self, rooms: Sequence[str]) -> dict[str, RoomInfo]:
        self._live()
        return self._rooms.room_info(rooms)

    def update_room(
        self, user: str, room: str, *, title: str | None = None, topic: str | None = None
    ) -> RoomInfo | None:
        self._live()
        return self._rooms.update_room(user, room, title=title, topic=topic)

    def set_public(self, room: str, public: bool) -> None:
        self._live()
        self._rooms.set_public(room, public)

    def create_room(
        self, room: str, *, title: str = "", topic: str = "", public: bool = True
    ) -> RoomInfo | None:
        self._live()
        return self._rooms.create_room(room, title=title, topic=topic, public=public)

    def set_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
    ) -> RoomInfo | None:
        self._live()
        return self._rooms.set_room(room, title=title, topic=topic, public=public)

    def delete_room(self, room: str) -> list[str] | None:
        self._live()
        return self._rooms.delete_room(room)

    def directory(
        self,
        *,
        query: str | None = None,
        after: str | None = None,
        limit: int,
        allowed: Callable[[str], bool] = lambda _room: True,
    ) -> tuple[list[RoomInfo], bool]:
        self._live()
        check_limit(limit)
        return self._rooms.directory(query=query, after=after, limit=limit, allowed=allowed)

    # -- moderation: the ModerationBook ------------------------------------------------------

    def standings(self, room: str, users: Sequence[str]) -> dict[str, Standing]:
        self._live()
        return self._moderation.standings(room, users)

    def mutes_of(self, user: str) -> dict[str, int]:
        self._live()
        return self._moderation.mutes_of(user)

    def moderate(
        self,
        room: str,
        user: str,
        standing: Standing,
        entry: AuditEntry,
        events: Sequence[OutboxEntry] = (),
    ) -> None:
        self._live()
        self._moderation.moderate(room, user, standing, entry)
        if events:
            self._outbox.add(events)

    def audit(self, room: str, *, before: str | None = None, limit: int) -> list[AuditEntry]:
        self._live()
        check_limit(limit)
        return self._moderation.audit(room, before, limit)

    def dm_partners(self, user: str) -> list[str]:
        self._live()
        return self._rooms.dm_partners(user)
