"""The message store's contract: what every backend (SQLite, Redis, memory) promises the server.

The server builds its delivery promises on four guarantees, and every backend keeps them:

1. A message is durable once ``append_batch`` returns: it survives the process being killed.
2. Resending with the same ``cid`` from the same sender to the same conversation never creates
   a second message: the original comes back flagged ``duplicate=True``, for as long as
   retention keeps the original. The same ``cid`` in another conversation is another message.
3. Each conversation numbers its messages ``seq`` 1, 2, 3, ... with no gaps at append. Each
   store has an ``epoch``, made when its data is created; a new epoch tells clients that ``seq``
   restarted (the store was wiped or replaced).
4. A direct message stays pending for its recipient until they acknowledge or read it.
5. An edit or a delete (a ``NewMessage`` with ``target``) is stored like a message, with the
   conversation's next ``seq`` and the same de-duplication by ``cid``, and changes its message
   in place in the same atomic step: ``history`` and ``get`` return the message as it is now,
   ``since`` returns the messages as they are now and the changes, in ``seq`` order.
   ``history`` pages messages only. A delete leaves a tombstone (``deleted``, no body) and
   erases the body of the message and of its earlier edits so that no read returns it again
   (SQLite also overwrites it in its files).
6. A reaction (``react`` or ``unreact``, the key as body) is a change too, made only when it
   changes the message's reactions: adding a key the sender already chose, or removing one
   they did not, stores nothing and answers ``unchanged`` (``duplicate``, no event). A new
   key beyond ``max_reactions`` is refused. A delete erases the message's reactions.
7. A reply (a message with ``reply_to``) is a message like any other, in its conversation's
   ``seq`` order, stored only when the message it answers is there, a message (not a change)
   and not deleted (else refused ``unknown`` or ``deleted``, atomically with the write). It
   belongs to the thread of the message it answers, or to that message's own thread when it
   answers a reply (``thread``: the root's mid). The root's ``thread_summary`` counts the
   replies neither deleted nor removed by retention, and ``thread`` pages them like
   ``history``. A root that is deleted keeps its summary and its thread; a root that
   retention removed takes its summary with it, and its thread is paged no more.

8. With webhooks configured (the store's ``outbox``), each message and change a write stores
   has its outbox entries stored with it, in the same transaction (SQLite, memory) or before
   ``append_batch`` returns (Redis: a second, idempotent step, like the recipients' indexes),
   so an acknowledged message's webhook events survive the process being killed. Entries are
   claimed with a lease (``outbox_due``), so of nodes sharing a store one delivers each entry
   at a time, and another takes it over once the lease ran out; delivered entries are removed,
   failed ones rescheduled or moved to the dead-letter queue, which lists, revives and deletes
   them by key.

9. Membership lasts: a user joined to a room stays its member until they leave, and the store
   keeps each room's title, topic and ``public`` flag and each user's direct-conversation
   partners (recorded as a direct message is stored). A user belongs to at most ``max_rooms``
   rooms: a join beyond them is refused (``full``) and changes nothing. The application may
   create a room before anyone joins it, change its metadata whoever belongs to it, and delete
   it: every membership ends and its metadata goes, its messages stay.
7. A user's read marker in a conversation only moves forward, and never beyond the
   conversation's last ``seq``. ``counts`` answers, for many conversations at once, the marker
   and how many messages after it are unread (sent by someone else, not deleted, not a
   change) and mention the user, each capped at ``cap`` with no more reading than the cap
   per conversation (see ``actorim.domain.markers``). A delete erases a message's mentions.

A write that fails may have stored part of its batch, each message whole: the batch contract is
per message (see ``Store``), because a batch spans conversations and the Redis store keeps each
conversation on its own shard. Resending the batch with the same cids completes it.

Stores are synchronous and single-threaded: one caller uses a store at a time (the store actor,
on its own thread for SQLite, on the hub for Redis and memory). Message bodies are opaque
bytes, already encoded by the protocol layer.

The messages themselves and their conversation keys are pure values of the domain
(``actorim.domain.messages``), re-exported here for the adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Literal, Protocol, runtime_checkable

from actorim.domain.markers import NO_COUNTS, Counts
from actorim.domain.messages import (
    CHANGE_KINDS,
    DEFAULT_MAX_REACTIONS,
    DELETE,
    DM_PREFIX,
    DM_SEPARATOR,
    EDIT,
    MAX_REACTION_KEY_BYTES,
    MAX_TS_MS,
    REACT,
    REACTION_KINDS,
    RECEIPT_LEVELS,
    ROOM_PREFIX,
    THREAD_USERS_SHOWN,
    UNREACT,
    NewMessage,
    Reaction,
    Receipt,
    ReceiptStatus,
    StoredMessage,
    ThreadSummary,
    dm_conv,
    encode_mid,
    mid_ms,
    new_mid,
    reaction_summary,
    room_conv,
    thread_summary,
)
from actorim.domain.moderation import AuditEntry, Standing
from actorim.domain.rooms import Conversation, JoinOutcome, RoomInfo, ordered
from actorim.domain.webhooks import OutboxEntry

__all__ = [
    "CHANGE_KINDS",
    "DEFAULT_MAX_AGE_MS",
    "DEFAULT_MAX_COUNT",
    "DEFAULT_MAX_REACTIONS",
    "DEFAULT_PRUNE_BUDGET",
    "DELETE",
    "DM_PREFIX",
    "DM_SEPARATOR",
    "EDIT",
    "NO_COUNTS",
    "REACT",
    "REACTION_KINDS",
    "RECEIPT_LEVELS",
    "ROOM_PREFIX",
    "THREAD_USERS_SHOWN",
    "UNREACT",
    "Batching",
    "Conversation",
    "Counts",
    "JoinCheck",
    "JoinOutcome",
    "NewMessage",
    "OutboxEntry",
    "OutboxFor",
    "Reaction",
    "Receipt",
    "ReceiptStatus",
    "RoomInfo",
    "Store",
    "StoreError",
    "StoredMessage",
    "ThreadSummary",
    "advanced",
    "applied",
    "bounded_page",
    "change_refusal",
    "check_cap",
    "check_limit",
    "check_new_message",
    "check_prune",
    "check_statuses",
    "dm_conv",
    "encode_mid",
    "inbox",
    "join_checked",
    "mid_ms",
    "new_mid",
    "private_to",
    "reaction_refusal",
    "reaction_summary",
    "refused",
    "reply_refusal",
    "room_conv",
    "thread_of",
    "thread_summary",
    "unchanged",
]

# Retention: a conversation keeps at most its newest 10,000 messages, and nothing older than 30
# days. Enough for any client to catch up after a long weekend offline, small enough that one
# busy room cannot grow the store without bound.
DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000

# Rows one prune call may delete. A thousand deletions take a few milliseconds, so pruning never
# holds up the sends waiting behind it; the caller simply prunes again until it returns 0.
DEFAULT_PRUNE_BUDGET = 1000


OutboxFor = Callable[[StoredMessage], Sequence[OutboxEntry]]
"""What a store is given to make the outbox entries of a message or change it just stored
(``actorim.protocol.webhooks.Webhooks.for_message``): nothing when no webhook wants it."""


class StoreError(Exception):
    """The store could not do what was asked; a write may have done part of it.

    Raised for I/O and database failures (disk full, database locked, store closed, data
    written by a newer version). Of a failed write, each message is stored whole or not at all
    (see ``Store``). A caller retries the same batch: ``cid`` de-duplication makes a retry safe
    and completes what the failure left undone.
    """


class StoreUnavailable(StoreError):
    """The store is away for a moment, or could not make a write as durable as configured in
    time (a Redis failover, fewer replicas than ``redis_min_replicas`` confirmed it): senders
    are told ``overloaded`` and resend with the same cids, which stores nothing twice."""


def check_limit(limit: int) -> None:
    """Refuse a page size below 1 (every backend's ``since``, ``history``, ``pending_for``)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def bounded_page(
    messages: Iterable[StoredMessage], *, limit: int, max_bytes: int | None
) -> tuple[list[StoredMessage], bool]:
    """The first of ``messages`` while they number at most ``limit`` and their bodies add up to
    at most ``max_bytes``, and whether any were left out (every backend's ``since``).

    Reading stops at the first message left out, so a lazy ``messages`` (a database cursor, a
    pager) is read no further than one message past the bound.

    >>> msgs = [StoredMessage(str(n), "r:r", n, 0, "al", "text", b"x" * 10, None, "r", None)
    ...         for n in (1, 2, 3)]
    >>> [[m.seq for m in page] for page, _ in (bounded_page(msgs, limit=2, max_bytes=None),
    ...                                       bounded_page(msgs, limit=5, max_bytes=25))]
    [[1, 2], [1, 2]]
    >>> bounded_page(msgs, limit=3, max_bytes=30)[1], bounded_page(msgs, limit=3, max_bytes=9)
    (False, ([], True))
    """
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    page: list[StoredMessage] = []
    size = 0
    for message in messages:
        size += len(message.body)
        if len(page) == limit or (max_bytes is not None and size > max_bytes):
            return page, True
        page.append(message)
    return page, False


def check_cap(cap: int) -> None:
    """Refuse a count cap below 1 (every backend's ``move_marker`` and ``counts``)."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")


def advanced(marker: int, seq: int, last_seq: int) -> int:
    """Where a marker at ``marker`` stands after its user read up to ``seq`` of a conversation
    whose last seq is ``last_seq``: forward only, never beyond the last seq.

    >>> advanced(3, 7, 10), advanced(3, 2, 10), advanced(3, 50, 10), advanced(0, 5, 0)
    (7, 3, 10, 0)
    """
    return max(marker, min(seq, last_seq))


def check_statuses(marks: Sequence[tuple[str, str, ReceiptStatus]]) -> None:
    """Refuse a receipt status other than delivered and read, before any mark is made."""
    for _, _, status in marks:
        if status not in RECEIPT_LEVELS:
            raise ValueError(f"status must be 'delivered' or 'read', got {status!r}")


def check_prune(*, max_count: int, max_age_ms: int, budget: int) -> None:
    """Refuse retention arguments that would prune everything or nothing."""
    if budget < 1 or max_count < 1 or max_age_ms < 0:
        raise ValueError(
            f"prune needs budget >= 1, max_count >= 1, max_age_ms >= 0; got {budget},"
            f" {max_count}, {max_age_ms}"
        )


def check_new_message(msg: NewMessage) -> None:
    """Refuse a message whose fields contradict each other, before any of its batch is stored.

    A contradiction is a bug in the caller (the conversation key is derived from ``room`` or
    from ``sender`` and ``to``), so it raises ValueError rather than StoreError.
    """
    if msg.room is not None and msg.to is not None:
        raise ValueError(f"a message has a room or a recipient, not both: {msg!r}")
    if msg.room is not None and msg.conv != room_conv(msg.room):
        raise ValueError(f"conv {msg.conv!r} is not the conversation of room {msg.room!r}")
    if msg.to is not None and msg.conv != dm_conv(msg.sender, msg.to):
        raise ValueError(
            f"conv {msg.conv!r} is not the conversation of {msg.sender!r} and {msg.to!r}"
        )
    if not msg.conv.startswith((ROOM_PREFIX, DM_PREFIX)):
        raise ValueError(f"conv must start with {ROOM_PREFIX!r} or {DM_PREFIX!r}: {msg.conv!r}")
    if not 0 <= msg.ts < MAX_TS_MS:
        raise ValueError(f"ts must be milliseconds since the epoch: {msg.ts!r}")
    if (msg.target is not None) != (msg.kind in CHANGE_KINDS):
        raise ValueError(f"a change needs a kind in {CHANGE_KINDS} and a target: {msg!r}")
    if msg.reply_to is not None and msg.target is not None:
        raise ValueError(f"a change cannot be a reply: {msg!r}")
    if msg.kind == DELETE and msg.body:
        raise ValueError(f"a delete carries no body: {msg!r}")
    if msg.kind in REACTION_KINDS:
        if not 0 < len(msg.body) <= MAX_REACTION_KEY_BYTES:
            raise ValueError(f"a reaction key is 1 to {MAX_REACTION_KEY_BYTES} bytes: {msg!r}")
        msg.body.decode()  # UnicodeDecodeError is a ValueError
        if msg.max_reactions < 1:
            raise ValueError(f"max_reactions must be at least 1: {msg!r}")
    if msg.mentions and (msg.target is not None or msg.sender in msg.mentions):
        raise ValueError(f"only a message mentions users, never its sender: {msg!r}")
    if any(not user or " " in user or "\x1f" in user for user in msg.mentions):
        raise ValueError(f"a mentioned user id has no spaces: {msg!r}")


def change_refusal(change: NewMessage, target: StoredMessage | None) -> str | None:
    """What the store answers for ``change`` when its message is ``target`` (None: unknown),
    or None when the change can be made: the part of the rules that must hold atomically with
    the write (``actorim.domain.changes`` has the rest)."""
    if target is None or target.conv != change.conv or target.target is not None:
        return "unknown"
    if target.deleted:
        return "deleted"
    return None


def reply_refusal(reply: NewMessage, parent: StoredMessage | None) -> str | None:
    """What the store answers for ``reply`` when the message it answers is ``parent`` (None:
    unknown or not retained), or None when the reply can be stored; checked atomically with
    the write, like :func:`change_refusal`."""
    if parent is None or parent.conv != reply.conv or parent.target is not None:
        return "unknown"
    if parent.deleted:
        return "deleted"
    return None


def thread_of(parent: StoredMessage) -> str:
    """The thread a reply to ``parent`` joins: its own thread when ``parent`` is a reply
    (threads are one level deep), else the one ``parent`` roots."""
    return parent.thread or parent.mid


def reaction_refusal(change: NewMessage, keys: dict[str, set[str]] | dict[str, int]) -> str | None:
    """``"too_many_reactions"`` when ``change`` adds a new key to a message whose distinct
    keys (``keys``: each key with its users, or their number) already reach its limit."""
    if change.kind != REACT:
        return None
    key = change.body.decode()
    if key in keys:
        return None
    held = sum(1 for users in keys.values() if users)
    return "too_many_reactions" if held >= change.max_reactions else None


def unchanged(change: NewMessage, last_seq: int) -> StoredMessage:
    """The answer to a reaction that changed nothing: no event stored, nothing to publish,
    ``duplicate`` with the conversation's last ``seq`` and the reacted message's mid."""
    assert change.target is not None
    return StoredMessage(
        change.target,
        change.conv,
        last_seq,
        change.ts,
        change.sender,
        change.kind,
        change.body,
        change.cid,
        change.room,
        change.to,
        duplicate=True,
        target=change.target,
    )


def applied(change: NewMessage, target: StoredMessage) -> StoredMessage:
    """``target`` as an edit or delete ``change`` leaves it: the edited body and time, or a
    tombstone."""
    if change.kind == EDIT:
        return replace(target, body=change.body, edited=change.ts, duplicate=False)
    return replace(target, body=b"", deleted=True, edited=None, duplicate=False, mentions=())


def refused(change: NewMessage, reason: str) -> StoredMessage:
    """The answer to a change or a reply the store did not make (no mid, no seq)."""
    return StoredMessage(
        "",
        change.conv,
        0,
        change.ts,
        change.sender,
        change.kind,
        b"",
        change.cid,
        change.room,
        change.to,
        target=change.target,
        refused=reason,
        reply_to=change.reply_to,
    )


@runtime_checkable
class Batching(Protocol):
    """A store that can run several calls as one transaction (SQLite): inside ``together()``
    each write is a savepoint (one that fails is undone alone, as its own transaction would
    have been), and the block commits them all at once, so a batch of joins or marker moves
    costs one sync to disk, not one each. Nothing the calls wrote is durable before the block
    ends: their answers wait for it."""

    def together(self) -> AbstractContextManager[None]: ...


class Store(Protocol):
    """The durable message store. Every method may raise StoreError.

    Writes are atomic per message, not per batch: when a write raises, any of its messages may
    have been stored (and, by a publishing backend, delivered), each whole: numbered, in its
    conversation's pages, and recognised by its cid, never half-written and never numbered
    twice. Resending the batch with the same cids stores each message exactly once and
    completes what the failure left undone (a recipient's pending index, the lookup by mid).
    SQLite stores a batch in one transaction and so does better (a failed batch stores
    nothing), but callers may rely on no more than the per-message promise;
    ``tests/test_store_conformance.py`` proves it for every backend. Receipts are likewise
    recorded one by one. Pages are always in ascending ``seq`` order. ``limit`` arguments must
    be at least 1.
    """

    @contextmanager
    def atomically(self) -> Iterator[None]:
        """Make the writes of the block one change: all kept, or, if the block raises, none.

        For a change and the webhook event that tells of it (a membership change and its
        ``room.member_*`` event): kept together, a crash between them cannot lose the event.
        SQLite makes the block one transaction (blocks nest: the outermost one commits). This
        default, kept by the memory store (nothing of it outlives the process anyway) and by
        Redis (whose writes here span several keys and scripts), makes the writes one by one.
        """
        yield

    def epoch(self) -> str:
        """The id made when this store's data was created; it changes when the data is wiped."""
        ...

    def append_batch(self, msgs: Sequence[NewMessage]) -> list[StoredMessage]:
        """Store ``msgs``, each atomically; one result per message, in the same order.

        Group commit: the caller gathers the sends of one instant into one batch. A message
        whose (sender, conv, cid) is already stored, or appeared earlier in the batch, is not
        stored again: its result is the original, flagged ``duplicate=True``.
        """
        ...

    def write_batch(
        self,
        msgs: Sequence[NewMessage],
        marks: Sequence[tuple[str, str, ReceiptStatus]],
    ) -> tuple[list[StoredMessage], list[Receipt | None]]:
        """``append_batch(msgs)`` then ``mark_batch(marks)``: the store actor's group commit.

        Receipts ride in the same commit as the sends around them, so a flood of acks costs
        one sync per batch instead of one each. A backend with transactions (SQLite) makes it
        one transaction; this default makes the two calls, and when the second raises the
        messages may be stored: resending them with their cids is safe.
        """
        return self.append_batch(msgs), self.mark_batch(marks)

    def last_seq(self, conv: str) -> int:
        """The highest ``seq`` given in ``conv``, 0 before its first message."""
        ...

    def since(
        self, conv: str, seq: int, *, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        """The first ``limit`` messages after ``seq``, and whether they are all that was missed.

        With ``max_bytes`` the page also stops before the message whose body would take the
        page's bodies beyond it (the page may then be empty), and the store reads no more than
        that (plus at most a small page of messages; see :func:`bounded_page`): a replay that
        will be refused for its size never holds a thousand large messages at once.

        ``complete`` is False when retention removed messages after ``seq``, or more than
        ``limit`` (or ``max_bytes``) follow it: the client cannot catch up from this page alone.
        """
        ...

    def history(
        self,
        conv: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        """One page of ``conv``, and whether more lie beyond it in the paging direction.

        Each message carries its ``reactions`` (in the order their keys were first chosen;
        ``me`` for those ``reader`` chose), a tombstone none; a root with replies its
        ``thread_summary``. Replies are messages of the conversation: they are paged too.

        No cursor: the latest ``limit`` (``more``: older ones exist). ``before``: the newest
        page below it (older ones exist). ``after``: the oldest page above it (newer ones
        exist). Both: the oldest page strictly between them (more of the range follows).
        """
        ...

    def get(self, mid: str) -> StoredMessage | None:
        """The message ``mid``, or None when unknown or no longer retained; a root with
        replies carries its ``thread_summary``."""
        ...

    def thread(
        self,
        root: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[StoredMessage | None, list[StoredMessage], bool]:
        """The root message ``root`` (as ``history`` shows it to ``reader``), one page of its
        thread's replies and whether more lie beyond it: ``history``'s cursors and order, over
        the replies only, each with its ``reactions`` as ``reader`` sees them (deleted replies
        as tombstones).

        ``(None, [], False)`` when ``root`` is unknown, no longer retained, a change or a
        reply: a thread is read through its root.
        """
        ...

    def pending_for(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[StoredMessage]:
        """Direct messages to ``user`` they have neither acknowledged nor read, oldest first.

        ``after`` pages through them: the mid of the last message of the previous page (a
        message to ``user``), which need not be pending any more (the reader may have
        acknowledged it meanwhile), so that acknowledgements never make a reader skip a
        message. Oldest first is an order on (``ts``, ``seq``, then the order of appending).
        When retention has removed ``after`` itself, the page starts at the first pending
        message of its millisecond.
        """
        ...

    def mark(self, mid: str, user: str, status: ReceiptStatus) -> Receipt | None:
        """Record that ``user``, the recipient of direct message ``mid``, got or read it.

        Ends the message's pending state. Returns the Receipt to send only when the status
        advanced (first "delivered", first "read"; read implies delivered), so each receipt is
        sent once. None when nothing advanced, ``mid`` is unknown or ``user`` is not its
        recipient.
        """
        ...

    def mark_batch(self, marks: Sequence[tuple[str, str, ReceiptStatus]]) -> list[Receipt | None]:
        """``mark`` for each (mid, user, status), each atomically; results in order."""
        ...

    def move_marker(self, user: str, conv: str, seq: int, *, cap: int) -> tuple[Counts, bool]:
        """Move ``user``'s read marker in ``conv`` to ``seq`` (see :func:`advanced`): never
        back, never beyond the conversation's last seq. Returns the counts as they are then
        and whether the marker moved."""
        ...

    def counts(self, user: str, convs: Sequence[str], *, cap: int) -> dict[str, Counts]:
        """``user``'s counts in each of ``convs`` (``NO_COUNTS`` for one never written in).

        Bounded work per conversation: counting stops at ``cap``. Cheap enough for the
        thousand conversations of a user's inbox in one call.
        """
        ...

    def prune(
        self,
        *,
        now_ms: int,
        max_count: int = DEFAULT_MAX_COUNT,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        budget: int = DEFAULT_PRUNE_BUDGET,
    ) -> int:
        """Delete, oldest first, up to ``budget`` messages beyond retention; return how many.

        Beyond retention means older than ``now_ms - max_age_ms``, or beyond the newest
        ``max_count`` of its conversation. Call again while it returns ``budget``.
        ``seq`` never restarts, even when a conversation is pruned empty.
        """
        ...

    # -- the webhook outbox and its dead-letter queue ---------------------------------------

    def outbox_add(self, entries: Sequence[OutboxEntry]) -> None:
        """Keep ``entries`` (events that are no stored message: presence changes). An entry
        whose key is already kept, live or dead, is not added again."""
        ...

    def outbox_due(
        self, endpoint: str, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[OutboxEntry]:
        """Claim up to ``limit`` live entries for ``endpoint`` due by ``now_ms``, soonest due
        first: each is leased (its ``due`` moved to ``now_ms + lease_ms``, so no other caller
        claims it meanwhile) and returned as it was before the lease."""
        ...

    def outbox_done(self, entry: OutboxEntry) -> None:
        """Forget ``entry``: it was delivered. Harmless when it is gone already."""
        ...

    def outbox_retry(self, entry: OutboxEntry) -> None:
        """Keep ``entry`` as given (``OutboxEntry.retried``: its attempts and next due time),
        if its key is still live."""
        ...

    def outbox_bury(self, entry: OutboxEntry) -> None:
        """Move ``entry`` (``OutboxEntry.buried``) to the dead-letter queue, if still live."""
        ...

    def dead_list(self, *, limit: int, after: str | None = None) -> list[OutboxEntry]:
        """Up to ``limit`` dead entries in key order (which is about time order), those after
        the key ``after`` when given."""
        ...

    def dead_retry(self, key: str, *, now_ms: int) -> bool:
        """Send the dead entry ``key`` back to the outbox, due now with its attempts counted
        afresh; False when no dead entry has that key."""
        ...

    def dead_delete(self, key: str) -> bool:
        """Delete the dead entry ``key``; False when no dead entry has that key."""
        ...

    def close(self) -> None:
        """Release the store; later calls raise StoreError. Closing twice is harmless."""
        ...

    # -- lasting membership, room metadata, direct-conversation partners -----------------------

    def join_room(self, user: str, room: str, *, max_rooms: int) -> JoinOutcome:
        """Make ``user`` a member of ``room`` (creating the room's metadata, public, on its
        first member): ``joined``; ``member`` when they were one already; ``full`` (nothing
        changed) when they belong to ``max_rooms`` rooms already."""
        ...

    def leave_room(self, user: str, room: str) -> bool:
        """End ``user``'s membership of ``room``; False when they were not a member."""
        ...

    def rooms_of(self, user: str) -> list[str]:
        """The rooms ``user`` is a member of, in name order."""
        ...

    def members_of(
        self, room: str, *, after: str | None = None, limit: int
    ) -> tuple[list[str], bool]:
        """A page of ``room``'s members in id order, after the id ``after``; and whether more
        follow."""
        ...

    def room_info(self, rooms: Sequence[str]) -> dict[str, RoomInfo]:
        """The metadata of each of ``rooms`` that has ever had a member."""
        ...

    def update_room(
        self, user: str, room: str, *, title: str | None = None, topic: str | None = None
    ) -> RoomInfo | None:
        """Set ``room``'s title and/or topic when ``user`` is a member (atomically with that
        check); the room's metadata after, or None when ``user`` is not a member."""
        ...

    def set_public(self, room: str, public: bool) -> None:
        """List the room in the directory or not (a room is public unless made private)."""
        ...

    def authored(self, conv: str, sender: str, *, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` of ``sender``'s messages in ``conv`` that are neither changes nor
        deleted, oldest first, as they are now: what erasing the sender's messages deletes.
        SQLite and Redis read about ``limit`` messages whatever the conversation's size (an
        index by sender); memory scans the conversation."""
        ...

    def authored_conversations(self, user: str, *, limit: int) -> list[str]:
        """Up to ``limit`` of the conversations where ``user`` has messages that ``authored``
        finds (neither changes nor deleted), whether or not they still take part in them (a
        room they left): where erasing everything of theirs looks. Each holds at least one of
        their messages, so ``limit`` conversations hold at least ``limit`` messages. The order
        is the store's own. Read through an index by user, whatever the store's size: SQLite
        steps through an index by sender and conversation, memory keeps a count per user and
        conversation, Redis keeps a set per user (see ``RedisStore.backfill_authored`` for
        messages stored before that set existed)."""
        ...

    def create_room(
        self, room: str, *, title: str = "", topic: str = "", public: bool = True
    ) -> RoomInfo | None:
        """Make ``room``'s metadata, with no member yet; None (nothing changed) when the room
        exists already (made by an earlier create or by its first join)."""
        ...

    def set_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
    ) -> RoomInfo | None:
        """Set what is given of ``room``'s title, topic and ``public`` flag, whoever asks (the
        application); the metadata after, or None (nothing changed) when the room does not
        exist."""
        ...

    def delete_room(self, room: str) -> list[str] | None:
        """End every membership of ``room`` and forget its metadata (it leaves the directory);
        the users who were its members, or None when the room did not exist. Its messages stay
        (``history`` still reads them, retention removes them); a later join or create makes
        the room afresh, its ``seq`` going on."""
        ...

    def directory(
        self,
        *,
        query: str | None = None,
        after: str | None = None,
        limit: int,
        allowed: Callable[[str], bool] = lambda _room: True,
    ) -> tuple[list[RoomInfo], bool]:
        """A page of the public rooms in name order, after the name ``after``, whose name or
        title contains ``query`` (``domain.rooms.matches``) and which ``allowed`` admits; and
        whether more follow."""
        ...

    def dm_partners(self, user: str) -> list[str]:
        """The users ``user`` has a direct conversation with (a direct message was stored
        between them, in either direction), in id order."""
        ...

    # -- moderation: roles, bans, mutes and the audit log (actorim.domain.moderation) ----------

    def standings(self, room: str, users: Sequence[str]) -> dict[str, Standing]:
        """The kept standing in ``room`` of each of ``users`` that has one (a user left out
        is a plain member)."""
        ...

    def mutes_of(self, user: str) -> dict[str, int]:
        """Each room where ``user`` has a mute kept, with when it ends (it may have ended)."""
        ...

    def moderate(
        self,
        room: str,
        user: str,
        standing: Standing,
        entry: AuditEntry,
        events: Sequence[OutboxEntry] = (),
    ) -> None:
        """Keep ``standing`` as ``user``'s in ``room`` (forgotten when it is the default),
        append ``entry`` to the room's audit log and keep ``events`` (its webhook outbox entries),
        together: atomically where the store can (SQLite, memory)."""
        ...

    def audit(self, room: str, *, before: str | None = None, limit: int) -> list[AuditEntry]:
        """A page of ``room``'s audit log, newest first, the entries whose id is below
        ``before``."""
        ...

    def last_seqs(self, convs: Sequence[str]) -> dict[str, int]:
        """``last_seq`` of each of ``convs``."""
        return {conv: self.last_seq(conv) for conv in convs}

    def latest(
        self, convs: Sequence[str], reader: str
    ) -> dict[str, tuple[int, StoredMessage | None]]:
        """Each conversation's latest ``seq`` and latest message as ``reader`` sees it
        (``history``'s newest), None when none is retained."""
        result: dict[str, tuple[int, StoredMessage | None]] = {}
        for conv in convs:
            page, _ = self.history(conv, limit=1, reader=reader)
            result[conv] = (self.last_seq(conv), page[-1] if page else None)
        return result


JoinCheck = Literal["joined", "member", "full", "private"]
"""What ``join_checked`` did: ``join_room``'s outcomes, or ``private``: refused, nothing changed."""


def join_checked(store: Store, user: str, room: str, *, max_rooms: int) -> JoinCheck:
    """A join of ``user``'s own (the WebSocket ``join``): a private room admits only the users
    the application made members, who are members already (``member``); any other join of a
    private room is ``private`` and changes nothing. A public room, or one that does not exist
    yet, is joined as ``join_room`` does."""
    info = store.room_info([room]).get(room)
    if info is not None and not info.public:
        return "member" if room in store.rooms_of(user) else "private"
    return store.join_room(user, room, max_rooms=max_rooms)


def private_to(store: Store, user: str, room: str) -> bool:
    """Whether ``room`` is private and ``user`` not its member: then they may neither join it
    nor read it (its history, its members)."""
    info = store.room_info([room]).get(room)
    return info is not None and not info.public and room not in store.rooms_of(user)


def inbox(store: Store, user: str, allowed: Callable[[str], bool]) -> list[Conversation]:
    """Every conversation of ``user`` (the rooms they belong to that ``allowed`` admits, and
    their direct conversations), latest activity first (``domain.rooms.ordered``)."""
    rooms = [room for room in store.rooms_of(user) if allowed(room)]
    partners = store.dm_partners(user)
    convs = [room_conv(room) for room in rooms] + [dm_conv(user, other) for other in partners]
    latest = store.latest(convs, user)
    infos = store.room_info(rooms)
    entries: list[Conversation] = []
    for room in rooms:
        seq, last = latest[room_conv(room)]
        info = infos.get(room, RoomInfo(room))
        activity = last.ts if last is not None else 0
        entries.append(
            Conversation(
                room_conv(room),
                room=room,
                seq=seq,
                last=last,
                activity=activity,
                title=info.title,
                topic=info.topic,
            )
        )
    for other in partners:
        conv = dm_conv(user, other)
        seq, last = latest[conv]
        activity = last.ts if last is not None else 0
        entries.append(Conversation(conv, with_=other, seq=seq, last=last, activity=activity))
    return ordered(entries)
