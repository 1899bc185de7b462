"""A client session's state, kept across reconnects: pure data and decisions, no I/O, no clock.

What makes "nothing lost, nothing doubled" work after a reconnect is decided here:

* every command waiting for an answer, in the order it was made, with what to do with it if
  the link ends before the answer (:class:`OnLoss`): a send (with its ``cid``), a join, a
  receipt, a read of history or presence is simply sent again on the next link;
* every joined room with the last ``seq`` seen and its ``epoch``, so that the next link
  re-joins with ``since`` and the server replays exactly what was missed;
* the last :data:`MAX_RECENT_MIDS` message ids seen, so that a message delivered twice (a
  replay, a direct message redelivered because its receipt was lost) reaches the application
  once.

The client (:mod:`actorim.client._client`) owns the socket and the waiting greenlets; it feeds
this object what arrived and writes what it says.

>>> session = Session(user="alice")
>>> command = session.submit("send", {"room": "r", "body": "hi", "cid": "c1"})
>>> [c.id for c in session.take_unsent()]
[1]
>>> session.link_lost()
([], [])
>>> [c.args["cid"] for c in session.take_unsent()]
['c1']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from actorim.client._errors import QueueFull

__all__ = [
    "CHANGE_EVENTS",
    "GAP_PAGE",
    "MAX_PENDING",
    "MAX_RECENT_MIDS",
    "Answer",
    "Command",
    "GapFill",
    "Incoming",
    "OnLoss",
    "RecentIds",
    "RoomState",
    "Session",
]

MAX_RECENT_MIDS = 10_000
"""Message ids remembered to drop duplicates. A duplicate comes from a replay after a reconnect
(at most the server's 1000-message recovery window per room) or a redelivered direct message:
10,000 ids cover both for a busy session and cost about a megabyte."""

MAX_PENDING = 10_000
"""Commands that may wait for an answer at once. Past it a new command fails with
``queue_full`` instead of growing without bound while the server is away."""


CHANGE_EVENTS = frozenset({"edit", "delete", "reaction"})
"""The events of a change to a stored message: each holds a ``seq`` of its room's order."""

CHANGE_COMMANDS = {"edit": "edit", "delete": "delete", "react": "reaction"}
"""The commands that change a stored message, and the event each one's change is."""

GAP_PAGE = 12
"""Messages per ``history`` page when filling a gap. Twelve messages of the largest size (a 64
KiB body each, plus their fields) make a reply of about 800 KiB: under the server's 1 MiB page
cap (so a page is never cut short), under what the client's link accepts (``DEFAULT_MAX_SIZE``)
and far under the server's 4 MiB outbox."""


class OnLoss(Enum):
    """What a command becomes when its link ends before its answer arrives."""

    RESEND = "resend"
    """Sent again, as it was, on the next link: safe for a send (its ``cid`` makes the server
    answer the original message), a join, a receipt, history, presence and watch."""
    DONE = "done"
    """Answered by the loss itself: a ``leave`` (a new link is in no room it was not re-joined
    to)."""
    FAIL = "fail"
    """Fails with ``link_lost``: commands that belong to one link (``connect``, the re-joins and
    the heartbeats of that link)."""


@dataclass(slots=True, eq=False)
class Command:
    """One command waiting for its reply. ``id`` stays the same when it is sent again."""

    id: int
    t: str
    args: dict[str, Any]
    on_loss: OnLoss
    resume: bool = False
    """A re-join made on a new link, with ``since``: its reply says whether the gap was
    replayed."""
    sent: bool = False

    def frame(self) -> dict[str, Any]:
        return {"t": self.t, "id": self.id, **self.args}


@dataclass(slots=True)
class RoomState:
    """A room the application joined."""

    seq: int | None = None
    """The last seq seen in the room (a message, or the join reply's latest): ``since`` on the
    next link."""
    epoch: str | None = None
    joined: bool = False
    """A join reply confirmed it: the next link re-joins it. Until then the join command itself
    is resent."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """What to do with a ``msg`` event."""

    deliver: bool
    """It is new to the application (not a duplicate, not the echo of its own resent send)."""
    ack: bool
    """It is a direct message to this user from someone else: acknowledge it."""
    settles: Command | None = None
    """The unanswered send this message is: its reply was lost with the link, and the server
    replayed the message on the next one."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply matched to its command, and the event (if any) the application should see."""

    command: Command
    event: dict[str, Any] | None = None
    gap: GapFill | None = None
    """A re-join that was not recovered: the gap to fill from ``history``."""


@dataclass(slots=True)
class GapFill:
    """The ``history`` pages that fill a gap: the room's messages after ``after`` up to and
    including ``through``.

    The server sends nothing of a gap too large to send at once: a re-join answers
    ``recovered: false`` with the latest ``seq``, and a room that skipped messages in its own
    fan-out sends a ``gap`` event. These pages bring the missed messages a page at a time
    instead.

    >>> fill = GapFill("r", after=10, through=50)
    >>> fill.next_args()
    {'room': 'r', 'after': 10, 'before': 51, 'limit': 12}
    >>> fill.page([{"seq": s} for s in range(11, 23)], more=True)
    >>> fill.next_args()["after"]
    22
    >>> fill.page([{"seq": s} for s in range(23, 51)], more=False)
    >>> fill.next_args() is None
    True
    """

    room: str
    after: int
    through: int

    def next_args(self) -> dict[str, Any] | None:
        """The next ``history`` command's arguments; None when the gap is filled."""
        if self.after >= self.through:
            return None
        before = self.through + 1
        return {"room": self.room, "after": self.after, "before": before, "limit": GAP_PAGE}

    def page(self, messages: list[dict[str, Any]], *, more: bool) -> None:
        """A page arrived: the next one starts after its last message."""
        seqs = [m["seq"] for m in messages if isinstance(m.get("seq"), int)]
        if not more or not seqs:
            self.after = self.through
        else:
            self.after = max(self.after, *seqs)


class RecentIds:
    """The last ``capacity`` ids seen; :meth:`add` says whether an id is new.

    >>> recent = RecentIds(2)
    >>> recent.add("a"), recent.add("b"), recent.add("a"), recent.add("c"), recent.add("a")
    (True, True, False, True, True)
    """

    __slots__ = ("_capacity", "_ids")

    def __init__(self, capacity: int = MAX_RECENT_MIDS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        # A dict keeps insertion order: its first key is the oldest id.
        self._ids: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, mid: object) -> bool:
        return mid in self._ids

    def add(self, mid: str) -> bool:
        if mid in self._ids:
            return False
        self._ids[mid] = None
        if len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]
        return True


@dataclass(slots=True)
class Session:
    """See the module docstring. ``user`` is set from the ``connect`` reply."""

    user: str | None = None
    auto_ack: bool = True
    max_pending: int = MAX_PENDING
    rooms: dict[str, RoomState] = field(default_factory=dict)
    watched: dict[str, None] = field(default_factory=dict)
    seen: RecentIds = field(default_factory=RecentIds)
    _commands: dict[int, Command] = field(default_factory=dict, init=False, repr=False)
    _sends: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _next_id: int = field(default=1, init=False, repr=False)
    # Rooms the server resumed at connect from the seq it was given: their re-join (with the
    # same since, which tells the application whether they recovered) replays nothing new.
    _current: set[str] = field(default_factory=set, init=False, repr=False)
    # Rooms the server subscribed this link to that the session did not know: not re-joined.
    _fresh: set[str] = field(default_factory=set, init=False, repr=False)
    # Resumed rooms whose re-join is on its way: a gap the server announces for one meanwhile
    # is filled after the re-join's reply says so (recovered: false), not twice.
    _resuming: set[str] = field(default_factory=set, init=False, repr=False)
    # What the last connect asked the server to resume: each room's seq, in that epoch.
    _resumed: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _resume_epoch: str | None = field(default=None, init=False, repr=False)

    # -- commands ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Commands waiting for a reply."""
        return len(self._commands)

    def submit(
        self,
        t: str,
        args: dict[str, Any],
        on_loss: OnLoss = OnLoss.RESEND,
        *,
        resume: bool = False,
        sent: bool = False,
    ) -> Command:
        """A new command; ``sent`` when the caller writes it on a link itself at once.

        Raises :class:`QueueFull` past ``max_pending``, except for the commands of a link
        (``OnLoss.FAIL``): a full queue must never stop the client from reconnecting."""
        if on_loss is not OnLoss.FAIL and len(self._commands) >= self.max_pending:
            raise QueueFull(
                f"{len(self._commands)} commands are waiting for the server already; "
                "wait for some answers (or for the link to come back) and try again"
            )
        command = Command(self._next_id, t, args, on_loss, resume, sent)
        self._next_id += 1
        self._commands[command.id] = command
        cid = args.get("cid") if t == "send" else None
        if isinstance(cid, str):
            self._sends[cid] = command.id
        return command

    def take_unsent(self) -> list[Command]:
        """Commands to write on the link now, oldest first; they count as sent from here."""
        unsent = [c for c in self._commands.values() if not c.sent]
        for command in unsent:
            command.sent = True
        return unsent

    def cancel(self, command_id: int) -> Command | None:
        """The caller stopped waiting (its timeout): forget the command."""
        command = self._commands.pop(command_id, None)
        if command is not None:
            self._forget_send(command)
        return command

    def link_lost(self) -> tuple[list[Command], list[Command]]:
        """The link ended. Returns the commands it answered (``DONE``) and those that fail
        (``FAIL``); every ``RESEND`` command waits to be written on the next link."""
        done: list[Command] = []
        failed: list[Command] = []
        for command in list(self._commands.values()):
            if command.on_loss is OnLoss.RESEND:
                command.sent = False
                continue
            del self._commands[command.id]
            (done if command.on_loss is OnLoss.DONE else failed).append(command)
        return done, failed

    def clear(self) -> list[Command]:
        """The client is closing: every waiting command, oldest first, now forgotten."""
        commands = list(self._commands.values())
        self._commands.clear()
        self._sends.clear()
        return commands

    def answered(self, frame: dict[str, Any]) -> Answer | None:
        """A reply arrived: its command (None if nobody waits for it any more) and its effect."""
        command = self._commands.pop(frame.get("id"), None)  # type: ignore[arg-type]
        if command is None:
            return None
        ok = frame.get("ok") is True
        data = frame.get("data")
        event = None
        gap = None
        if command.t == "send":
            self._forget_send(command)
            if ok and isinstance(data, dict) and isinstance(data.get("mid"), str):
                # A replay of this message after a reconnect is not news to the sender.
                self.seen.add(data["mid"])
        elif command.t in CHANGE_COMMANDS:
            if ok and isinstance(data, dict) and not data.get("unchanged"):
                # Its replay after a reconnect is not news to the one who made it.
                event_t = CHANGE_COMMANDS[command.t]
                self.seen.add(f"{event_t}:{data.get('mid')}:{data.get('seq')}")
        elif command.t == "connect" and ok and isinstance(data, dict):
            # Taken in as the reply is read, before the live events behind it move any seq.
            self.user = data.get("user")
            self.inbox(data.get("conversations"), data.get("epoch"))
        elif command.t == "join":
            room = command.args["room"]
            if ok and isinstance(data, dict):
                gap = self._gap(room, data) if command.resume else None
                event = self._joined(room, data, resumed=command.resume)
            else:
                event = self._join_refused(room, frame.get("error"), resumed=command.resume)
        return Answer(command, event, gap)

    def _forget_send(self, command: Command) -> None:
        cid = command.args.get("cid") if command.t == "send" else None
        if isinstance(cid, str) and self._sends.get(cid) == command.id:
            del self._sends[cid]

    # -- rooms and watches -------------------------------------------------------------------

    def joining(self, room: str) -> None:
        """The application asked to join ``room``."""
        self.rooms.setdefault(room, RoomState())

    def leaving(self, room: str) -> bool:
        """The application asked to leave ``room``: it is not re-joined again. Returns whether
        it was joined (or being joined)."""
        return self.rooms.pop(room, None) is not None

    def resume_args(self) -> dict[str, Any]:
        """What ``connect`` carries so that the server resumes the rooms the client knows from
        the last seq seen in each (``since``, with the store's ``epoch``)."""
        since = {
            name: state.seq
            for name, state in self.rooms.items()
            if state.joined and state.seq is not None
        }
        self._resumed = dict(since)
        epochs = {state.epoch for state in self.rooms.values() if state.epoch is not None}
        self._resume_epoch = epochs.pop() if len(epochs) == 1 else None
        if not since or self._resume_epoch is None:
            return {}
        return {"since": since, "epoch": self._resume_epoch}

    def inbox(self, conversations: Any, epoch: Any = None) -> None:
        """The ``connect`` reply's inbox: the server subscribed this link to the user's rooms,
        each from the seq ``connect`` named for it (in the same ``epoch``) or else from its
        latest. A room the session did not know is joined from now on; one it named is not
        re-joined."""
        self._current = set()
        self._fresh = set()
        resumed = self._resumed if epoch is not None and epoch == self._resume_epoch else {}
        for entry in conversations if isinstance(conversations, list) else ():
            room = entry.get("room") if isinstance(entry, dict) else None
            seq = entry.get("seq")
            if not isinstance(room, str) or not isinstance(seq, int):
                continue
            state = self.rooms.get(room)
            if state is None:
                state = self.rooms[room] = RoomState(seq=seq, epoch=epoch, joined=True)
                self._fresh.add(room)
            elif room in resumed and state.joined:
                self._current.add(room)

    def membership(self, event: dict[str, Any]) -> None:
        """A ``member`` event about the user themself: they joined or left a room on another
        device, and this link receives it, or no longer does."""
        room = event.get("room")
        if not isinstance(room, str) or event.get("user") != self.user:
            return
        if event.get("state") == "joined":
            self.rooms.setdefault(room, RoomState(joined=True))
        elif event.get("state") == "left":
            self.leaving(room)

    def rejoin_args(self) -> list[dict[str, Any]]:
        """The ``join`` arguments that restore every confirmed room on a new link, resuming after
        the last seq seen (those the server subscribed the link to that the session did not
        know are not joined)."""
        rejoins = []
        current, self._current = self._current, set()
        fresh, self._fresh = self._fresh, set()
        self._resuming = set(current)
        for name, state in self.rooms.items():
            if not state.joined or name in fresh:
                continue
            args: dict[str, Any] = {"room": name}
            if state.seq is not None:
                args["since"] = state.seq
                if state.epoch is not None:
                    args["epoch"] = state.epoch
            rejoins.append(args)
        return rejoins

    def watch(self, users: Iterable[str]) -> None:
        for user in users:
            self.watched[user] = None

    def unwatch(self, users: Iterable[str]) -> None:
        for user in users:
            self.watched.pop(user, None)

    def _gap(self, room: str, data: dict[str, Any]) -> GapFill | None:
        """A re-join reply that did not recover: the missed messages to page from history, when
        the room's numbering did not restart (same epoch) and messages were missed."""
        state = self.rooms.get(room)
        seq = data.get("seq")
        if (
            state is None
            or data.get("recovered") is not False
            or state.seq is None
            or not isinstance(seq, int)
            or seq <= state.seq
            or data.get("epoch") != state.epoch
        ):
            return None
        return GapFill(room, state.seq, seq)

    def skipped(self, event: dict[str, Any]) -> GapFill | None:
        """A ``gap`` event: the room skipped its messages after ``after`` through ``seq`` (too
        many to send at once). Returns the gap to fill from history, for a room joined here."""
        room, after, seq = event.get("room"), event.get("after"), event.get("seq")
        if not isinstance(room, str) or not isinstance(after, int) or not isinstance(seq, int):
            return None
        state = self.rooms.get(room)
        if state is None or seq <= after:
            return None
        if room in self._current or room in self._resuming:
            return None  # resumed by connect: its re-join, on its way, says what to fill
        if state.seq is None or seq > state.seq:
            # Filled from history, not by the next re-join (as after recovered: false).
            state.seq = seq
        return GapFill(room, after, seq)

    def _joined(self, room: str, data: dict[str, Any], *, resumed: bool) -> dict[str, Any] | None:
        state = self.rooms.get(room)
        if state is None:
            return None  # left while the join was on its way
        seq = data.get("seq")
        epoch = data.get("epoch")
        self._resuming.discard(room)
        recovered = data.get("recovered") is not False
        if isinstance(seq, int) and (state.seq is None or not recovered):
            # First join: messages after the room's latest seq arrive live. Not recovered: the
            # gap is filled from history (see GapFill), not by the next re-join.
            state.seq = seq
        if isinstance(epoch, str):
            state.epoch = epoch
        state.joined = True
        if not resumed:
            return None
        return {
            "t": "rejoined",
            "room": room,
            "seq": seq,
            "epoch": epoch,
            "members": data.get("members", []),
            "recovered": recovered,
        }

    def _join_refused(self, room: str, error: Any, *, resumed: bool) -> dict[str, Any] | None:
        state = self.rooms.get(room)
        if state is not None and (resumed or not state.joined):
            del self.rooms[room]
        if not resumed:
            return None  # the caller of join() gets the error
        error = error if isinstance(error, dict) else {"code": "internal", "message": ""}
        return {"t": "error", "room": room, "error": error}

    # -- messages ----------------------------------------------------------------------------

    def change(self, event: dict[str, Any]) -> bool:
        """An ``edit``, ``delete`` or ``reaction`` event arrived: remember its seq (it holds a
        place in the room's order, so the next re-join resumes after it), and say whether it is
        new to the application. Its ``mid`` is the message's, so it is told apart by its
        ``seq`` too."""
        self._saw_seq(event)
        mid, seq = event.get("mid"), event.get("seq")
        key = f"{event.get('t')}:{mid}:{seq}"
        return isinstance(mid, str) and isinstance(seq, int) and self.seen.add(key)

    def _saw_seq(self, event: dict[str, Any]) -> None:
        room, seq = event.get("room"), event.get("seq")
        if isinstance(room, str) and isinstance(seq, int):
            state = self.rooms.get(room)
            if state is not None and (state.seq is None or seq > state.seq):
                state.seq = seq

    def message(self, msg: dict[str, Any]) -> Incoming:
        """A ``msg`` event arrived: remember its seq, and say what to do with it."""
        mid = msg.get("mid")
        self._saw_seq(msg)
        sender = msg.get("from")
        ack = self.auto_ack and msg.get("to") == self.user and sender != self.user
        settles = None
        cid = msg.get("cid")
        if sender == self.user and isinstance(cid, str) and cid in self._sends:
            settles = self._commands.pop(self._sends.pop(cid))
        new = isinstance(mid, str) and self.seen.add(mid)
        return Incoming(deliver=new and settles is None, ack=ack, settles=settles)
