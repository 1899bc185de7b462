"""A room's log, fed events without a node: ordering, gap hold and repair, replay merge, members.

The room actor carries out what the log returns; these tests check the decisions alone.
"""

from __future__ import annotations

import doctest
import random
from dataclasses import dataclass

import actorim.domain.roomlog
from actorim.domain.roomlog import (
    Deliver,
    Effect,
    Gap,
    JoinReplay,
    ReadLast,
    ReadSince,
    RetryLater,
    RoomLog,
    Skip,
    fits,
    join_replay,
    union,
)


@dataclass(frozen=True)
class Msg:
    seq: int
    size: int = 10


def new_log(max_messages: int = 5, max_bytes: int = 1000) -> RoomLog[Msg, str]:
    return RoomLog(size=lambda m: m.size, max_messages=max_messages, max_bytes=max_bytes)


def delivered(effects: list[Effect[Msg]]) -> list[int]:
    return [e.item.seq for e in effects if isinstance(e, Deliver)]


def test_doctests() -> None:
    assert doctest.testmod(actorim.domain.roomlog).failed == 0


def test_in_order_messages_go_out_once_each() -> None:
    log = new_log()
    assert delivered(log.publish(Msg(1))) == [1]
    assert log.publish(Msg(1)) == []  # a replay and the live copy of one message
    assert delivered(log.publish(Msg(2))) == [2]
    assert log.seq == 2


def test_a_gap_holds_what_follows_until_the_store_fills_it() -> None:
    log = new_log()
    log.publish(Msg(1))
    assert log.publish(Msg(4)) == [ReadSince(1)]
    assert log.publish(Msg(5)) == []  # held behind the gap, no second read
    assert log.repair() == []  # a read is in flight already
    effects = log.gap_read([Msg(2), Msg(3), Msg(4)], complete=True)
    assert delivered(effects) == [2, 3, 4, 5]
    assert log.held is None and log.seq == 5


def test_a_repair_beyond_the_bounds_is_skipped_up_to_the_latest() -> None:
    log = new_log(max_messages=2)
    log.publish(Msg(1))
    assert log.publish(Msg(5)) == [ReadSince(1)]
    assert log.gap_read([Msg(2), Msg(3), Msg(4)], complete=False) == [ReadLast()]
    assert log.last_read(7) == [Skip(Gap(1, 7))]
    assert log.seq == 7 and log.held is None
    assert delivered(log.publish(Msg(8))) == [8]


def test_a_failed_read_retries_while_the_held_messages_fit() -> None:
    log = new_log(max_messages=2)
    log.publish(Msg(1))
    log.publish(Msg(3))
    assert log.gap_read_failed() == [RetryLater()]
    assert log.retry() == [ReadSince(1)]
    log.publish(Msg(4))
    log.publish(Msg(5))  # three held: beyond the bounds
    assert log.gap_read_failed() == [Skip(Gap(1, 5))]
    assert log.held is None and log.seq == 5


def test_a_failed_last_read_with_nothing_held_retries() -> None:
    log = new_log()
    assert log.repair() == [ReadSince(0)]
    assert log.gap_read([Msg(1)], complete=False) == [ReadLast()]
    assert log.last_read(None) == [RetryLater()]
    assert log.retry() == [ReadSince(0)]


def test_a_restart_publishes_what_was_held_again() -> None:
    log = new_log()
    log.publish(Msg(1))
    log.publish(Msg(3))
    log.publish(Msg(4))
    assert log.restarted() == [ReadSince(1)]  # the lost read is asked again
    assert log.held == [Msg(3), Msg(4)]


def test_random_arrival_orders_deliver_every_seq_once_in_order() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(200):
        seqs = list(range(1, 21))
        arrivals = [s for s in seqs if rng.random() < 0.7]
        rng.shuffle(arrivals)
        arrivals += rng.sample(arrivals, len(arrivals) // 3) if arrivals else []  # duplicates
        log = new_log(max_messages=50, max_bytes=10_000)
        out: list[int] = []
        for seq in arrivals:
            effects = log.publish(Msg(seq))
            out += delivered(effects)
            while any(isinstance(e, ReadSince) for e in effects):
                # The store has everything published so far.
                effects = log.gap_read([Msg(s) for s in seqs if s > log.seq], complete=True)
                out += delivered(effects)
        assert out == sorted(set(out)), seed
        if arrivals:
            assert out == list(range(1, max(arrivals) + 1)) or out == seqs, seed


def test_membership_counts_connections_per_user() -> None:
    log = new_log()
    assert log.join("a1", "alice") is True
    assert log.join("a2", "alice") is False
    assert log.join("a2", "alice") is None  # a member already
    assert log.leave("a1", "alice") is False
    assert log.leave("a1", "alice") is None  # not a member
    assert log.leave("a2", "alice") is True
    assert log.users == {} and log.members == {}


def test_a_members_replay_is_merged_with_what_went_out_meanwhile() -> None:
    log = new_log()
    log.join("a1", "alice")
    log.hold_for("a1")
    held = log.holding("a1")
    assert held is not None
    held += [(3, Msg(3)), (4, Msg(4)), (5, Gap(4, 5))]
    # The replay covered up to 3: what was held beyond it follows, in order.
    assert log.replayed("a1", 3) == [Msg(4), Gap(4, 5)]
    assert log.holding("a1") is None


def test_a_member_that_left_during_its_replay_gets_nothing() -> None:
    log = new_log()
    log.join("a1", "alice")
    log.hold_for("a1")
    log.leave("a1", "alice")
    assert log.replayed("a1", 0) is None


def test_join_replay_decisions() -> None:
    assert join_replay(None, seq=5, same_epoch=True, max_messages=10) is JoinReplay.NONE
    assert join_replay(5, seq=5, same_epoch=True, max_messages=10) is JoinReplay.RECOVERED
    assert join_replay(2, seq=5, same_epoch=True, max_messages=10) is JoinReplay.REPLAY
    assert join_replay(2, seq=5, same_epoch=False, max_messages=10) is JoinReplay.REFUSED
    assert join_replay(6, seq=5, same_epoch=True, max_messages=10) is JoinReplay.REFUSED
    assert join_replay(2, seq=50, same_epoch=True, max_messages=10) is JoinReplay.REFUSED


def test_bounds_and_union() -> None:
    assert fits([Msg(1), Msg(2)], lambda m: m.size, max_messages=2, max_bytes=20)
    assert not fits([Msg(1), Msg(2)], lambda m: m.size, max_messages=1, max_bytes=20)
    assert not fits([Msg(1, 15), Msg(2)], lambda m: m.size, max_messages=2, max_bytes=20)
    assert [m.seq for m in union([Msg(2), Msg(3)], [Msg(3), Msg(4)])] == [2, 3, 4]
