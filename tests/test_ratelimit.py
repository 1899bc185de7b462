"""Per-connection rate limit: bursts are allowed, floods refused, persistent floods closed."""

from __future__ import annotations

import random
from collections import deque

import pytest

from actorim.domain.ratelimit import (
    DEFAULT_ABUSE_REJECTIONS,
    DEFAULT_ABUSE_WINDOW_S,
    DEFAULT_BURST,
    DEFAULT_RATE_PER_S,
    RateLimiter,
    TokenBucket,
    Verdict,
)

ALLOW, REJECT, ABUSE = Verdict.ALLOW, Verdict.REJECT, Verdict.ABUSE


def test_defaults_are_100_per_second_bursts_of_200_and_200_refusals_in_10_seconds() -> None:
    assert (DEFAULT_RATE_PER_S, DEFAULT_BURST) == (100, 200)
    assert (DEFAULT_ABUSE_REJECTIONS, DEFAULT_ABUSE_WINDOW_S) == (200, 10)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (time, cost) -> taken?  rate 10/s, burst 3, starting full at t=0
        ([(0, 1), (0, 1), (0, 1), (0, 1)], [True, True, True, False]),
        ([(0, 3), (0.1, 1), (0.1, 1)], [True, True, False]),
        ([(0, 3), (0.05, 1)], [True, False]),
        ([(0, 3), (100, 3), (100, 1)], [True, True, False]),  # refill stops at burst
        ([(0, 4)], [False]),  # a cost over the burst never fits
        ([(0, 2), (0, 2), (0.1, 2)], [True, False, True]),  # a refusal takes nothing
    ],
)
def test_token_bucket_allows_bursts_and_refills_at_its_rate(
    steps: list[tuple[float, float]], expected: list[bool]
) -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0)
    assert [bucket.take(now, cost) for now, cost in steps] == expected


def test_token_bucket_does_not_refill_when_the_clock_goes_backwards() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=5)
    assert bucket.take(5)
    assert not bucket.take(1)
    assert not bucket.take(5)
    assert bucket.take(5.1)


def test_default_limiter_allows_a_burst_of_200_then_rejects_then_refills() -> None:
    limiter = RateLimiter(now=0.0)
    assert [limiter.check(0.0) for _ in range(200)] == [ALLOW] * 200
    assert limiter.check(0.0) is REJECT
    # 100 commands a second come back: half a second later, 50 more fit.
    assert [limiter.check(0.5) for _ in range(51)] == [ALLOW] * 50 + [REJECT]
    assert limiter.check(2.5) is ALLOW


def test_well_behaved_client_at_the_sustained_rate_is_never_refused() -> None:
    limiter = RateLimiter(now=0.0)
    verdicts = {limiter.check(i / 100) for i in range(60 * 100)}  # a minute at 100/s
    assert verdicts == {ALLOW}


def test_client_that_backs_off_after_refusals_is_never_abusive() -> None:
    limiter = RateLimiter(now=0.0)
    seen: list[Verdict] = []
    now = 0.0
    for _ in range(100):  # a hundred bursts, each overshooting by 150 commands
        seen += [limiter.check(now) for _ in range(350)]
        now += 10.0  # then waits for the window to pass
    assert ABUSE not in seen
    assert seen.count(REJECT) == 100 * 150


def test_flood_is_abuse_once_rejections_exceed_the_limit_within_the_window() -> None:
    limiter = RateLimiter(now=0.0)
    verdicts = [limiter.check(0.0) for _ in range(200 + 201)]
    assert verdicts == [ALLOW] * 200 + [REJECT] * 200 + [ABUSE]
    assert limiter.abusive


def test_abuse_is_final_even_after_the_client_calms_down() -> None:
    limiter = RateLimiter(now=0.0, rate=1, burst=1, abuse_rejections=2)
    assert [limiter.check(0.0) for _ in range(4)] == [ALLOW, REJECT, REJECT, ABUSE]
    assert limiter.check(1000.0) is ABUSE


@pytest.mark.parametrize(
    ("sends_per_s", "abusive"),
    [
        (100, False),  # exactly the rate: no refusals at all
        (110, False),  # 10 refusals/s: 100 per 10 s window, under 200
        (115, False),  # 150 per window
        (125, True),  # 250 per window
        (1000, True),
    ],
)
def test_sustained_overload_is_abuse_only_above_the_refusal_limit(
    sends_per_s: int, abusive: bool
) -> None:
    limiter = RateLimiter(now=0.0, burst=100)
    verdicts = [limiter.check(i / sends_per_s) for i in range(sends_per_s * 60)]
    assert (ABUSE in verdicts) is abusive


def test_refusals_are_counted_for_one_window_from_the_first_of_them() -> None:
    limiter = RateLimiter(now=0.0, rate=1, burst=1, abuse_rejections=200, abuse_window_s=10)
    assert limiter.check(0.0) is ALLOW
    assert [limiter.check(0.0) for _ in range(150)] == [REJECT] * 150
    assert limiter.check(9.5) is ALLOW
    assert [limiter.check(9.5) for _ in range(51)] == [REJECT] * 50 + [ABUSE]


def test_refusals_a_full_window_apart_are_not_added_up() -> None:
    limiter = RateLimiter(now=0.0, rate=1, burst=1, abuse_rejections=200, abuse_window_s=10)
    assert limiter.check(0.0) is ALLOW
    assert [limiter.check(0.0) for _ in range(200)] == [REJECT] * 200
    assert limiter.check(10.0) is ALLOW
    assert [limiter.check(10.0) for _ in range(200)] == [REJECT] * 200


@pytest.mark.parametrize("seed", range(20))
def test_abuse_matches_the_refusal_limit_for_random_traffic(seed: int) -> None:
    # Phases of random length and pace. ABUSE must only come after more than 100 refusals
    # within 2 s; and until it comes, no 2 s ever held more than twice that many.
    rng = random.Random(seed)
    limiter = RateLimiter(now=0.0, rate=50, burst=50, abuse_rejections=100, abuse_window_s=2)
    recent: deque[float] = deque()  # refusals within the last 2 s
    now = 0.0
    for _ in range(200):
        phase_end = now + rng.uniform(0.2, 4.0)
        pace = rng.choice([10, 40, 60, 80, 150])
        while now < phase_end:
            now += rng.expovariate(pace)
            while recent and recent[0] <= now - 2:
                recent.popleft()
            verdict = limiter.check(now)
            if verdict is ABUSE:
                assert len(recent) + 1 > 100
                return
            if verdict is REJECT:
                recent.append(now)
                assert len(recent) <= 2 * 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"burst": 0},
        {"abuse_rejections": -1},
        {"abuse_window_s": 0},
    ],
)
def test_invalid_limits_are_refused_up_front(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RateLimiter(now=0.0, **kwargs)  # type: ignore[arg-type]


def test_limiter_keeps_a_fixed_small_footprint() -> None:
    limiter = RateLimiter(now=0.0)
    for i in range(10_000):
        limiter.check(i / 1000)
    assert not hasattr(limiter, "__dict__")
    assert not hasattr(limiter._bucket, "__dict__")


def test_a_charge_after_the_fact_puts_the_limiter_in_debt_until_it_refills() -> None:
    limiter = RateLimiter(0.0, rate=10, burst=20)
    assert limiter.check(0.0) is ALLOW
    limiter.charge(0.0, 29)  # a large reply: 19 tokens were left, 10 are owed
    assert limiter.in_debt(0.0)
    assert limiter.check(0.5) is REJECT  # 5 owed
    assert limiter.in_debt(0.99) and not limiter.in_debt(1.0)
    assert limiter.check(1.1) is ALLOW


def test_a_debt_is_at_most_one_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    bucket.debit(0.0, 1_000_000)
    assert bucket.available(0.0) == -20
    assert bucket.available(4.0) == 20  # two bursts' time repays it and refills it
