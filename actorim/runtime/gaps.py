"""A room's own gap repair, decided without I/O: what to fan out, and where to skip.

A room actor that missed messages (Redis was away, or the actor restarted) reads them back
from the store and fans them out before the messages that followed. Every member gets the whole
repair at once, so it is bounded like a member's own replay (``replay_max_messages``,
``replay_max_bytes``): queued at once, a thousand large messages overflowed every member's
outbox and closed the whole room with 1013, at every retry. Beyond the bounds the room sends
no messages of the gap at all, only a :class:`Gap` event saying which seqs it skipped, and the
clients page ``history`` over them as they do after ``recovered: false``.

>>> from actorim.protocol.wire import WireFrame
>>> def publish(seq): return Publish(seq, WireFrame({"t": "msg", "seq": seq}), None)
>>> steps = in_order(3, [publish(7), publish(4), publish(3), publish(5)])
>>> [step.seq if isinstance(step, Publish) else str(step) for step in steps]
[4, 5, 'gap after 5 through 6', 7]
>>> fits([publish(4), publish(5)], max_messages=2, max_bytes=100)
True
>>> fits([publish(4), publish(5)], max_messages=1, max_bytes=100)
False
>>> Gap(5, 6).frame("lobby").obj
{'t': 'gap', 'room': 'lobby', 'after': 5, 'seq': 6}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from actorim.protocol.codec import Encoding
from actorim.protocol.wire import WireFrame
from actorim.runtime.messages import Publish

__all__ = ["Gap", "fits", "in_order", "union"]


@dataclass(frozen=True, slots=True)
class Gap:
    """The room skipped the messages after ``after`` up to and including ``seq``: its members
    fetch them with ``history {room, after, before: seq + 1}``."""

    after: int
    seq: int

    def frame(self, room: str) -> WireFrame:
        return WireFrame({"t": "gap", "room": room, "after": self.after, "seq": self.seq})

    def __str__(self) -> str:
        return f"gap after {self.after} through {self.seq}"


def fits(publishes: Iterable[Publish], *, max_messages: int, max_bytes: int) -> bool:
    """Whether ``publishes`` may be queued to every member at once: at most ``max_messages``
    of them and ``max_bytes`` of frames (MessagePack, the encoding nearly every member speaks
    and the one the fan-out encodes anyway)."""
    size = 0
    for count, publish in enumerate(publishes, 1):
        size += len(publish.frame.bytes_for(Encoding.MSGPACK))
        if count > max_messages or size > max_bytes:
            return False
    return True


def in_order(seq: int, publishes: Iterable[Publish]) -> list[Publish | Gap]:
    """The fan-out after ``seq``: ``publishes`` once each in ``seq`` order, those at or below
    ``seq`` dropped (fanned out already), and a :class:`Gap` wherever seqs are missing."""
    steps: list[Publish | Gap] = []
    last = seq
    for publish in sorted({p.seq: p for p in publishes if p.seq > seq}.values(), key=_seq):
        if publish.seq > last + 1:
            steps.append(Gap(last, publish.seq - 1))
        steps.append(publish)
        last = publish.seq
    return steps


def union(publishes: Sequence[Publish], held: Sequence[Publish]) -> list[Publish]:
    """The messages a repair would fan out: those read back from the store and those that
    arrived meanwhile, each seq once (a held message is often in the store's page too)."""
    return list({p.seq: p for p in [*publishes, *held]}.values())


def _seq(publish: Publish) -> int:
    return publish.seq
