"""The client's decisions, fed events directly: the session kept across reconnects, the link
state shown to the application, and the reconnect schedule of the default policy on a clock we
move by hand."""

from __future__ import annotations

import doctest
import itertools
from typing import Any

import pytest

import actorim.client._state
import actorim.client._status
from actorim.breaker.machine import BreakerState, CircuitBreaker, Transition
from actorim.client import DEFAULT_POLICY, LinkState, QueueFull, StateChange
from actorim.client._state import GAP_PAGE, GapFill, OnLoss, RecentIds, Session
from actorim.client._status import LinkStatus

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CONNECTING, CONNECTED = LinkState.CONNECTING, LinkState.CONNECTED
DISCONNECTED, CIRCUIT_OPEN = LinkState.DISCONNECTED, LinkState.CIRCUIT_OPEN


@pytest.mark.parametrize("module", [actorim.client._state, actorim.client._status])
def test_the_examples_in_the_docstrings_hold(module: Any) -> None:
    assert doctest.testmod(module).failed == 0


def reply(command_id: int, **data: Any) -> dict[str, Any]:
    return {"t": "reply", "id": command_id, "ok": True, "data": data}


def refusal(command_id: int, code: str) -> dict[str, Any]:
    return {"t": "reply", "id": command_id, "ok": False, "error": {"code": code, "message": "no"}}


def msg(mid: str, seq: int, *, room: str | None = "r", **fields: Any) -> dict[str, Any]:
    event = {"t": "msg", "mid": mid, "seq": seq, "from": "bob", "kind": "text", "body": mid}
    if room is not None:
        event["room"] = room
    event.update(fields)
    return event


def joined(session: Session, room: str = "r", seq: int = 0, epoch: str = "e1") -> None:
    session.joining(room)
    command = session.submit("join", {"room": room})
    session.take_unsent()
    session.answered(reply(command.id, room=room, seq=seq, epoch=epoch, members=["alice"]))


# -- commands across a lost link -------------------------------------------------------------


def test_unanswered_sends_are_written_again_on_the_next_link_in_order_with_their_cid() -> None:
    session = Session(user="alice")
    first = session.submit("send", {"room": "r", "body": 1, "cid": "c1"})
    second = session.submit("send", {"room": "r", "body": 2, "cid": "c2"})
    assert session.take_unsent() == [first, second]
    assert session.take_unsent() == []
    session.answered(reply(first.id, mid="m1", seq=1, ts=0))
    done, failed = session.link_lost()
    assert (done, failed) == ([], [])
    third = session.submit("send", {"room": "r", "body": 3, "cid": "c3"})
    resent = session.take_unsent()
    assert resent == [second, third]
    assert [c.frame() for c in resent] == [
        {"t": "send", "id": second.id, "room": "r", "body": 2, "cid": "c2"},
        {"t": "send", "id": third.id, "room": "r", "body": 3, "cid": "c3"},
    ]


def test_a_lost_link_answers_a_leave_and_fails_the_commands_that_belonged_to_it() -> None:
    session = Session(user="alice")
    leave = session.submit("leave", {"room": "r"}, OnLoss.DONE)
    ping = session.submit("ping", {}, OnLoss.FAIL, sent=True)
    ack = session.submit("ack", {"mid": "m1"})
    session.take_unsent()
    done, failed = session.link_lost()
    assert done == [leave]
    assert failed == [ping]
    assert session.take_unsent() == [ack]
    assert session.pending == 1


def test_a_replay_of_an_unanswered_send_answers_it_and_is_not_delivered() -> None:
    session = Session(user="alice")
    send = session.submit("send", {"room": "r", "body": "x", "cid": "c1"})
    session.take_unsent()
    session.link_lost()
    replay = msg("m1", 4, **{"from": "alice", "cid": "c1"})
    incoming = session.message(replay)
    assert incoming.settles is send
    assert not incoming.deliver
    assert session.take_unsent() == []  # answered: not sent again
    assert not session.message(replay).deliver


def test_own_messages_replayed_after_their_reply_are_dropped() -> None:
    session = Session(user="alice")
    joined(session)
    send = session.submit("send", {"room": "r", "body": "x", "cid": "c1"})
    session.answered(reply(send.id, mid="m1", seq=1, ts=0))
    incoming = session.message(msg("m1", 1, **{"from": "alice", "cid": "c1"}))
    assert not incoming.deliver
    assert incoming.settles is None


def reaction(mid: str, seq: int, user: str = "bob") -> dict[str, Any]:
    return {"t": "reaction", "mid": mid, "seq": seq, "room": "r", "key": "+1", "user": user}


def test_own_reactions_replayed_after_their_reply_are_dropped_but_not_others_at_an_old_seq() -> (
    None
):
    session = Session(user="alice")
    joined(session)
    made = session.submit("react", {"mid": "m1", "key": "+1", "on": True, "cid": "r1"})
    session.answered(reply(made.id, mid="m1", seq=2, ts=0, room="r"))
    assert not session.change(reaction("m1", 2, user="alice"))
    # A reaction that changed nothing answers the conversation's latest seq, which is someone
    # else's event: it still reaches the application.
    again = session.submit("react", {"mid": "m1", "key": "+1", "on": True, "cid": "r2"})
    session.answered(reply(again.id, mid="m1", seq=3, ts=0, room="r", unchanged=True))
    assert session.change(reaction("m1", 3))
    assert session.rooms["r"].seq == 3


def test_a_message_seen_twice_reaches_the_application_once() -> None:
    session = Session(user="alice")
    joined(session)
    assert session.message(msg("m1", 1)).deliver
    assert not session.message(msg("m1", 1)).deliver
    assert session.message(msg("m2", 2)).deliver


def test_direct_messages_to_this_user_are_acknowledged_even_when_seen_twice() -> None:
    session = Session(user="alice")
    dm = msg("d1", 1, room=None, to="alice")
    assert session.message(dm).ack
    assert session.message(dm).ack  # its first receipt may have been lost with a link
    assert not session.message(msg("d2", 2, room=None, to="carol", **{"from": "alice"})).ack
    assert not session.message(msg("m1", 1)).ack
    assert not Session(user="alice", auto_ack=False).message(dm).ack


def test_duplicate_ids_are_remembered_up_to_a_bound() -> None:
    recent = RecentIds(3)
    for mid in "abcd":
        assert recent.add(mid)
    assert len(recent) == 3
    assert "a" not in recent
    assert not recent.add("d")
    assert recent.add("a")  # forgotten, so new again
    with pytest.raises(ValueError, match="capacity"):
        RecentIds(0)


def test_the_queue_of_waiting_commands_is_bounded_but_never_blocks_a_reconnect() -> None:
    session = Session(user="alice", max_pending=2)
    session.submit("ack", {"mid": "a"})
    session.submit("ack", {"mid": "b"})
    with pytest.raises(QueueFull, match="2 commands are waiting"):
        session.submit("ack", {"mid": "c"})
    assert session.submit("connect", {"token": "t"}, OnLoss.FAIL, sent=True).t == "connect"


def test_a_command_given_up_on_is_never_written_again() -> None:
    session = Session(user="alice")
    send = session.submit("send", {"room": "r", "body": "x", "cid": "c1"})
    assert session.cancel(send.id) is send
    assert session.take_unsent() == []
    assert session.message(msg("m1", 1, **{"from": "alice", "cid": "c1"})).settles is None
    assert session.answered(reply(send.id, mid="m1", seq=1, ts=0)) is None


# -- rooms across a lost link ----------------------------------------------------------------


def test_rooms_are_rejoined_after_the_last_seq_seen_with_their_epoch() -> None:
    session = Session(user="alice")
    joined(session, "quiet", seq=7, epoch="e1")
    joined(session, "busy", seq=0, epoch="e1")
    session.message(msg("m1", 1, room="busy"))
    session.message(msg("m2", 2, room="busy"))
    session.message(msg("m1", 1, room="busy"))  # an old one again moves nothing back
    assert session.rejoin_args() == [
        {"room": "quiet", "since": 7, "epoch": "e1"},
        {"room": "busy", "since": 2, "epoch": "e1"},
    ]


def test_a_room_whose_join_is_unanswered_is_joined_by_resending_the_join_itself() -> None:
    session = Session(user="alice")
    session.joining("r")
    join = session.submit("join", {"room": "r"})
    session.take_unsent()
    session.link_lost()
    assert session.rejoin_args() == []
    assert session.take_unsent() == [join]


def test_a_left_room_is_not_rejoined() -> None:
    session = Session(user="alice")
    joined(session)
    assert session.leaving("r")
    assert not session.leaving("r")
    assert session.rejoin_args() == []


def test_a_rejoin_tells_the_application_whether_the_gap_was_replayed() -> None:
    session = Session(user="alice")
    joined(session, seq=3, epoch="e1")
    rejoin = session.submit("join", session.rejoin_args()[0], OnLoss.FAIL, resume=True, sent=True)
    answer = session.answered(
        reply(rejoin.id, room="r", seq=9, epoch="e1", members=["alice", "bob"], recovered=True)
    )
    assert answer is not None and answer.event == {
        "t": "rejoined",
        "room": "r",
        "seq": 9,
        "epoch": "e1",
        "members": ["alice", "bob"],
        "recovered": True,
    }
    assert session.rejoin_args() == [{"room": "r", "since": 3, "epoch": "e1"}]  # replay follows


def test_a_gap_that_cannot_be_replayed_is_skipped_and_reported() -> None:
    session = Session(user="alice")
    joined(session, seq=3, epoch="e1")
    rejoin = session.submit("join", session.rejoin_args()[0], OnLoss.FAIL, resume=True, sent=True)
    answer = session.answered(
        reply(rejoin.id, room="r", seq=5000, epoch="e2", members=["alice"], recovered=False)
    )
    assert answer is not None and answer.event is not None
    assert answer.event["recovered"] is False
    assert session.rejoin_args() == [{"room": "r", "since": 5000, "epoch": "e2"}]


def test_a_gap_not_replayed_in_the_same_epoch_is_filled_from_history() -> None:
    session = Session(user="alice")
    joined(session, seq=3, epoch="e1")
    rejoin = session.submit("join", session.rejoin_args()[0], OnLoss.FAIL, resume=True, sent=True)
    answer = session.answered(
        reply(rejoin.id, room="r", seq=83, epoch="e1", members=["alice"], recovered=False)
    )
    assert answer is not None and answer.gap == GapFill("r", after=3, through=83)
    assert answer.gap.next_args() == {"room": "r", "after": 3, "before": 84, "limit": GAP_PAGE}
    assert session.rejoin_args() == [{"room": "r", "since": 83, "epoch": "e1"}]
    # A new epoch numbers the room afresh: the old seqs name nothing to fetch.
    rejoin = session.submit("join", session.rejoin_args()[0], OnLoss.FAIL, resume=True, sent=True)
    answer = session.answered(reply(rejoin.id, room="r", seq=90, epoch="e2", recovered=False))
    assert answer is not None and answer.gap is None


def test_a_refused_join_forgets_the_room_and_a_refused_rejoin_is_reported() -> None:
    session = Session(user="alice")
    session.joining("secret")
    join = session.submit("join", {"room": "secret"})
    answer = session.answered(refusal(join.id, "forbidden"))
    assert answer is not None and answer.event is None
    assert session.rooms == {}
    joined(session, "r")
    rejoin = session.submit("join", session.rejoin_args()[0], OnLoss.FAIL, resume=True, sent=True)
    answer = session.answered(refusal(rejoin.id, "forbidden"))
    assert answer is not None
    assert answer.event == {
        "t": "error",
        "room": "r",
        "error": {"code": "forbidden", "message": "no"},
    }
    assert session.rooms == {}


def test_joining_a_joined_room_again_keeps_its_place() -> None:
    session = Session(user="alice")
    joined(session, seq=2)
    session.message(msg("m5", 5))
    again = session.submit("join", {"room": "r"})
    session.answered(reply(again.id, room="r", seq=9, epoch="e1", members=[]))
    assert session.rejoin_args() == [{"room": "r", "since": 5, "epoch": "e1"}]


# -- the link state ------------------------------------------------------------------------


def moved(old: BreakerState, new: BreakerState, failures: int = 0) -> Transition:
    return Transition(old, new, 0.0, f"{old}>{new}", failures)


def test_link_states_follow_the_breaker_and_the_link() -> None:
    status = LinkStatus()
    assert status.state is DISCONNECTED
    assert status.link_up("early") is None  # not started: still DISCONNECTED
    status.link_down("reset")
    steps = [
        (status.start("go"), CONNECTING),
        (status.link_up("connected"), CONNECTED),
        (status.link_down("lost"), CONNECTING),
        (status.breaker_moved(moved(CLOSED, CLOSED, 1)), None),
        (status.breaker_moved(moved(CLOSED, OPEN, 3)), CIRCUIT_OPEN),
        (status.breaker_moved(moved(OPEN, HALF_OPEN, 3)), CONNECTING),
        (status.link_up("trial connected"), None),  # CONNECTED once the breaker closes
        (status.breaker_moved(moved(HALF_OPEN, CLOSED)), CONNECTED),
        (status.breaker_moved(moved(CLOSED, OPEN)), CIRCUIT_OPEN),  # heartbeats lost
        (status.breaker_moved(moved(OPEN, HALF_OPEN)), CONNECTING),
        (status.stop("closed by the application"), DISCONNECTED),
        (status.start("again"), None),
        (status.link_up("late"), None),
    ]
    for change, expected in steps:
        assert (change.state if change else None) is expected


def test_a_state_change_says_where_from_and_why() -> None:
    status = LinkStatus()
    assert status.start("connecting to ws://x/ws") == StateChange(
        DISCONNECTED, CONNECTING, "connecting to ws://x/ws"
    )


# -- the default reconnect schedule, on a clock moved by hand -------------------------------


def most(low: float, high: float) -> float:
    """Every jitter at the top of its range: the longest delays the policy allows."""
    return high


class Scenario:
    """A breaker under the client's default policy, driven the way the breaker actor drives it,
    at the instants it asks for; the link's state is recorded at each change."""

    def __init__(self) -> None:
        self.breaker = CircuitBreaker(DEFAULT_POLICY, now=0.0, rand=most)
        self.status = LinkStatus()
        self.now = 0.0
        self.states: list[tuple[float, LinkState]] = []
        self.attempts: list[float] = []
        self._record(self.status.start("connect"))

    def _record(self, change: StateChange | None) -> None:
        if change is not None:
            self.states.append((self.now, change.state))

    def _publish(self) -> None:
        for transition in self.breaker.drain_transitions():
            self._record(self.status.breaker_moved(transition))

    def lose(self, at: float, *, going_away: bool = False) -> StateChange | None:
        """The connected link ends at ``at``: the client reports it to the breaker, then shows
        the change (``going_away``: the server closed with 1001, a restart)."""
        self.now = at
        self.breaker.record_failure(at, "connection reset", going_away=going_away)
        self._publish()
        change = self.status.link_down("lost")
        self._record(change)
        return change

    def step(self, answer: str) -> None:
        """Move the clock to the next deadline; an attempt due then is answered ``answer``
        (``ok``, ``refused`` at once, or ``silent``: never)."""
        self.now = self.breaker.next_deadline()
        breaker = self.breaker
        breaker.check_heartbeat(self.now)
        launched = None
        if breaker.state is OPEN and breaker.allow(self.now):
            launched = "trial"
        elif breaker.heartbeat_due(self.now):
            breaker.heartbeat_sent(self.now)
            launched = "heartbeat"
        self._publish()
        if launched is None:
            return
        self.attempts.append(self.now)
        if answer == "refused":
            breaker.record_failure(self.now, "connection refused")
        elif answer == "ok":
            self._record(self.status.link_up("connected"))
            if launched == "trial":
                breaker.record_success(self.now)
            else:
                breaker.heartbeat_answered(self.now)
        self._publish()


def test_reconnects_back_off_exponentially_then_the_circuit_opens_for_a_cool_down() -> None:
    run = Scenario()
    for _ in range(6):
        run.step("refused")
    # 0.25 s + jitter up to 0.25 * 2**n: at most 0.5, 0.75, 1.25, 2.25, 4.25 s apart.
    assert run.attempts == [0.0, 0.5, 1.25, 2.5, 4.75, 9.0]
    assert run.states == [(0.0, CONNECTING), (9.0, CIRCUIT_OPEN)]
    run.step("refused")  # the cool-down: 10 s + jitter up to 10 s
    assert run.attempts[-1] == 29.0
    assert run.states[-2:] == [(29.0, CONNECTING), (29.0, CIRCUIT_OPEN)]
    run.step("ok")  # re-opened: 10 s + jitter up to 20 s
    assert run.attempts[-1] == 59.0
    assert run.states[-2:] == [(59.0, CONNECTING), (59.0, CONNECTED)]


def test_a_lost_link_is_tried_again_within_half_a_second() -> None:
    run = Scenario()
    run.step("ok")
    run.lose(at=3.0)
    run.step("ok")
    assert run.states == [(0.0, CONNECTING), (0.0, CONNECTED), (3.0, CONNECTING), (3.5, CONNECTED)]


def test_a_server_that_stays_down_is_tried_about_once_a_minute() -> None:
    run = Scenario()
    for _ in range(20):
        run.step("refused")
    trials = run.attempts[DEFAULT_POLICY.failure_threshold :]
    gaps = [b - a for a, b in itertools.pairwise(trials)]
    # The cool-down's jitter doubles with each re-opening up to its cap.
    assert gaps[:3] == [30.0, 50.0, 70.0]
    assert set(gaps[3:]) == {DEFAULT_POLICY.cooldown + DEFAULT_POLICY.cooldown_cap} == {70.0}


def test_a_server_that_stops_answering_is_noticed_within_the_detection_time() -> None:
    run = Scenario()
    run.step("ok")
    assert run.states[-1] == (0.0, CONNECTED)
    for _ in range(4):
        run.step("silent")
    opened = [t for t, state in run.states if state is CIRCUIT_OPEN]
    assert opened == [DEFAULT_POLICY.detection_time] == [25.0]


def test_a_restart_announced_with_going_away_is_retried_without_opening_the_circuit() -> None:
    run = Scenario()
    run.step("ok")
    lost = run.lose(at=100.0, going_away=True)
    assert lost is not None and lost.state is CONNECTING
    assert lost.retry_in == 0.5, "the change says when the first attempt goes out"
    while run.now < 100.0 + DEFAULT_POLICY.restart_grace:
        run.step("refused")
    # Every attempt within the grace was refused, more than failure_threshold of them.
    within = [t for t in run.attempts if 100.0 < t < 130.0]
    assert len(within) > DEFAULT_POLICY.failure_threshold
    assert CIRCUIT_OPEN not in [state for _, state in run.states]
    run.step("ok")
    assert run.states[-1][1] is CONNECTED


def test_the_restart_grace_is_a_bound_a_server_that_stays_down_opens_the_circuit() -> None:
    run = Scenario()
    run.step("ok")
    run.lose(at=100.0, going_away=True)
    while run.states[-1][1] is not CIRCUIT_OPEN:
        run.step("refused")
    opened_at, _ = run.states[-1]
    after_grace = [t for t in run.attempts if t >= 100.0 + DEFAULT_POLICY.restart_grace]
    assert len(after_grace) == DEFAULT_POLICY.failure_threshold
    assert opened_at == after_grace[-1]


def test_a_lost_link_without_warning_still_opens_the_circuit_after_the_threshold() -> None:
    run = Scenario()
    run.step("ok")
    run.lose(at=100.0)
    while run.states[-1][1] is not CIRCUIT_OPEN:
        run.step("refused")
    # The loss itself is the first failure; five refused attempts make six.
    assert len([t for t in run.attempts if t > 100.0]) == DEFAULT_POLICY.failure_threshold - 1
