"""``actorim bench storm``: its pure parts fed directly, then a small storm against real nodes."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from actorim.tools.loadtest.recovery import RETRY_CAP_S, RETRY_FLOOR_S, SeqLog, reconnect_delay
from actorim.tools.loadtest.stormoptions import StormOptions
from actorim.tools.loadtest.stormworker import StormSpec, StormWorker
from actorim.tools.loadtest.wire import decode_line
from tests.redis_server import RedisServer


def test_a_log_counts_what_never_came_and_what_came_twice_after_the_join_only() -> None:
    log = SeqLog(base=100)
    for seq in (99, 100, 101, 103, 103, 103, 102, 105):
        log.arrived(seq)
    assert log.caught_up == 103
    # 104 never came; 103 came three times; 99 and 100 were before the join.
    assert log.count([101, 102, 103, 104, 105]) == (1, 2)
    assert SeqLog(base=5).count([3, 4, 5]) == (0, 0)


def test_an_attempt_waits_the_hint_plus_a_step_and_refusals_back_off_capped() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rand = random.Random(seed).uniform
    first = reconnect_delay(0, hint=1.5, rand=rand)
    assert 1.5 + RETRY_FLOOR_S <= first <= 1.5 + 2 * RETRY_FLOOR_S
    assert RETRY_FLOOR_S <= reconnect_delay(0, hint=None, rand=rand) <= 2 * RETRY_FLOOR_S
    later = [reconnect_delay(n, hint=None, rand=rand) for n in range(1, 30)]
    assert all(RETRY_FLOOR_S <= d <= RETRY_CAP_S for d in later)
    # Sent away by a busy node (1013 with a hint): its hint, then the back-off's step.
    sent_away = [reconnect_delay(n, hint=2.0, rand=rand) for n in range(1, 30)]
    assert all(2.0 + RETRY_FLOOR_S <= d <= 2.0 + RETRY_CAP_S for d in sent_away)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (StormOptions(clients=0), "--clients"),
        (StormOptions(nodes=2), "--redis-url"),
        (StormOptions(redis_url="redis://x"), "--nodes"),
        (StormOptions(spread=61), "--spread"),
        (StormOptions(clients=2, processes=3), "--processes"),
    ],
)
def test_impossible_storms_are_refused_naming_the_flag(options: StormOptions, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        options.check()


def test_only_a_recovered_client_can_lose_a_message_one_not_back_missed_it_while_away() -> None:
    # Three clients of one room, the publisher acknowledged seqs 11 to 14: one is back and
    # holds them all, one is back and never got 13 (a loss: the server acknowledged it and did
    # not deliver it), one is not back (it gave up, or was still on its way: nothing could
    # reach it, and it would resume from 12 when it came back).
    spec = StormSpec(0, ("ws://a", "ws://b"), 0, 3, 1, "s", "u", "room-", 1.0, seed=1)
    lines: list[bytes] = []
    worker = StormWorker(spec, lines.append)
    held = ((11, 12, 13, 14), (11, 12, 14), (11, 12))
    for client, seqs in zip(worker.clients, held, strict=True):
        client.log = SeqLog(base=10)
        for seq in seqs:
            client.log.arrived(seq)
    worker.clients[0].recovered_ns = worker.clients[1].recovered_ns = 1
    worker.settle({"room-0": [11, 12, 13, 14]}, timeout=0)  # 13 is not on its way: no wait
    result = decode_line(lines[-1])
    assert result["type"] == "result"
    assert (result["lost"], result["clients_losing"]) == (1, 1)
    assert (result["not_back"], result["missed_while_away"]) == (1, 2)


@pytest.mark.process
def test_a_small_storm_on_two_nodes_recovers_every_client_with_nothing_lost_or_doubled(
    redis_session: RedisServer,
) -> None:
    seed = random.randrange(1, 2**31)
    print(f"seed={seed}")
    command = [sys.executable, "-m", "actorim", "bench", "storm", "--clients", "20"]
    redis_url = f"redis://127.0.0.1:{redis_session.port}/0"
    command += ["--nodes", "2", "--redis-url", redis_url, "--rate", "50"]
    command += ["--drain-seconds", "0.2", "--spread", "1", "--seed", str(seed), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert (report["joined"], report["recovered"]) == (20, 20), report
    # Counted per client and room against every seq the publisher had acknowledged.
    assert (report["lost"], report["duplicated"]) == (0, 0), report
    assert report["published"] > 0
    # Each client was told a delay within the spread, and came back to the other node.
    assert 0 <= report["hint_mean_s"] <= 1
    assert report["attempts"] >= 20
    assert set(report["server_cpu_s"]) == {"A (draining)", "B"}
    # Drained while the publisher kept sending into its rooms, node A exited by itself.
    assert report["drained_exit"].startswith("exited 0 "), report["drained_exit"]
