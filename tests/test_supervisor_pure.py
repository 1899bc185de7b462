"""The pure decision objects of supervision: restart intensity, back-off, specs and exit reasons.

None of these touch the hub or a clock: times and random draws are passed in.
"""

from __future__ import annotations

import pytest

from supervisors import (
    Backoff,
    ChildKind,
    ChildSpec,
    Exit,
    ExitKind,
    GeventActor,
    Restart,
    RestartIntensity,
    Strategy,
    Supervisor,
)


def _start() -> None:
    """A start callable for specs that are only validated, never started."""


# -- RestartIntensity --------------------------------------------------------------------------


def test_intensity_allows_max_restarts_within_the_window() -> None:
    intensity = RestartIntensity(max_restarts=3, max_seconds=5)

    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]


def test_intensity_is_exceeded_by_one_restart_more_than_max_restarts() -> None:
    intensity = RestartIntensity(max_restarts=3, max_seconds=5)
    for t in (0.0, 1.0, 2.0):
        intensity.record(t)

    assert intensity.record(3.0) is False


def test_intensity_forgets_restarts_older_than_the_window() -> None:
    intensity = RestartIntensity(max_restarts=2, max_seconds=5)
    intensity.record(0.0)
    intensity.record(1.0)

    # The restart at t=0 leaves the window exactly max_seconds later.
    assert intensity.record(5.0) is True
    assert len(intensity) == 2
    assert intensity.record(5.5) is False


def test_intensity_with_zero_max_restarts_escalates_at_the_first_restart() -> None:
    intensity = RestartIntensity(max_restarts=0, max_seconds=1)

    assert intensity.record(0.0) is False


def test_intensity_sliding_window_after_a_quiet_period_allows_a_new_burst() -> None:
    intensity = RestartIntensity(max_restarts=2, max_seconds=10)
    assert intensity.record(0.0)
    assert intensity.record(1.0)

    assert intensity.record(100.0)
    assert intensity.record(101.0)
    assert len(intensity) == 2


@pytest.mark.parametrize(
    ("max_restarts", "max_seconds", "field"),
    [(-1, 5, "max_restarts"), (3, 0, "max_seconds"), (3, -1, "max_seconds")],
)
def test_intensity_rejects_impossible_limits_naming_the_field(
    max_restarts: int, max_seconds: float, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        RestartIntensity(max_restarts, max_seconds)


# -- Backoff -----------------------------------------------------------------------------------


def _top_of_range(low: float, high: float) -> float:
    assert low == 0.0
    return high


def test_backoff_delay_is_the_floor_plus_a_draw_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(floor=0.5, cap=30, factor=2)
    draws: list[tuple[float, float]] = []

    def rand(low: float, high: float) -> float:
        draws.append((low, high))
        return 0.25

    assert backoff.delay(3, rand=rand) == 0.75
    assert draws == [(0.0, 4.0)]


def test_backoff_ceiling_grows_by_factor_per_attempt() -> None:
    backoff = Backoff(floor=0.1, cap=100, factor=3)

    assert [backoff.delay(n, rand=_top_of_range) for n in range(4)] == pytest.approx(
        [0.1 + 0.1, 0.1 + 0.3, 0.1 + 0.9, 0.1 + 2.7]
    )


def test_backoff_jitter_never_exceeds_the_cap() -> None:
    backoff = Backoff(floor=1, cap=5, factor=2)

    assert backoff.delay(10, rand=_top_of_range) == 6.0


def test_backoff_of_a_huge_attempt_number_is_capped_without_overflow() -> None:
    backoff = Backoff(floor=1, cap=5, factor=10)

    assert backoff.ceiling(10_000) == 5
    assert backoff.delay(10_000, rand=_top_of_range) == 6.0


def test_backoff_with_zero_draw_waits_exactly_the_floor() -> None:
    assert Backoff(floor=0.2).delay(7, rand=lambda _lo, _hi: 0.0) == 0.2


def test_backoff_default_draw_stays_within_floor_and_floor_plus_ceiling() -> None:
    backoff = Backoff(floor=0.1, cap=1, factor=2)

    for attempt in range(8):
        delay = backoff.delay(attempt)
        assert backoff.floor <= delay <= backoff.floor + backoff.ceiling(attempt)


def test_backoff_subclass_can_inject_its_own_random_source() -> None:
    class Deterministic(Backoff):
        def delay(self, attempt: int, rand=None) -> float:  # type: ignore[override]
            return super().delay(attempt, rand=_top_of_range)

    assert Deterministic(floor=1, cap=10, factor=2).delay(2) == 5.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"floor": -1}, "floor"),
        ({"cap": -0.1}, "cap"),
        ({"reset_after": -5}, "reset_after"),
        ({"factor": 0.5}, "factor"),
    ],
)
def test_backoff_rejects_negative_or_shrinking_settings_naming_the_field(
    kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ValueError, match=f"Backoff.{field}"):
        Backoff(**kwargs)


# -- ChildSpec ---------------------------------------------------------------------------------


def test_child_spec_defaults_are_a_permanent_worker_with_a_five_second_shutdown() -> None:
    spec = ChildSpec(id="w", start=_start)

    assert spec.restart is Restart.PERMANENT
    assert spec.kind is ChildKind.WORKER
    assert spec.shutdown == 5.0
    assert spec.backoff is None
    assert spec.args == ()
    assert dict(spec.kwargs) == {}


def test_child_spec_of_a_supervisor_waits_for_its_subtree_by_default() -> None:
    spec = ChildSpec(id="sub", start=_start, kind="supervisor")

    assert spec.kind is ChildKind.SUPERVISOR
    assert spec.shutdown is None


def test_child_spec_accepts_plain_strings_for_its_vocabularies() -> None:
    spec = ChildSpec(id="w", start=_start, restart="transient", kind="worker")

    assert spec.restart is Restart.TRANSIENT
    assert spec.kind is ChildKind.WORKER


def test_child_spec_keeps_an_explicit_shutdown_including_zero_and_none() -> None:
    assert ChildSpec(id="a", start=_start, shutdown=0).shutdown == 0
    assert ChildSpec(id="b", start=_start, shutdown=None).shutdown is None
    assert ChildSpec(id="c", start=_start, shutdown=0.2).shutdown == 0.2


def test_child_spec_turns_args_into_a_tuple() -> None:
    assert ChildSpec(id="w", start=_start, args=[1, 2]).args == (1, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": None}, "id"),
        ({"start": "not callable"}, "start"),
        ({"restart": "sometimes"}, "restart"),
        ({"kind": "manager"}, "kind"),
        ({"shutdown": -1}, "shutdown"),
        ({"shutdown": "soon"}, "shutdown"),
        ({"backoff": 1.5}, "backoff"),
        ({"start_timeout": 0}, "start_timeout"),
    ],
)
def test_child_spec_rejects_a_bad_field_with_an_error_naming_it(
    kwargs: dict[str, object], field: str
) -> None:
    values: dict[str, object] = {"id": "w", "start": _start, **kwargs}

    with pytest.raises(ValueError, match=f"ChildSpec.{field} "):
        ChildSpec(**values)  # type: ignore[arg-type]


def test_child_spec_is_immutable() -> None:
    spec = ChildSpec(id="w", start=_start)

    with pytest.raises(AttributeError):
        spec.restart = Restart.TEMPORARY  # type: ignore[misc]


# -- Exit --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "abnormal"),
    [
        (ExitKind.NORMAL, False),
        (ExitKind.FAILURE, True),
        (ExitKind.KILLED, True),
        (ExitKind.NOPROC, False),
    ],
)
def test_exit_is_abnormal_exactly_for_failures_and_kills(kind: ExitKind, abnormal: bool) -> None:
    assert Exit(kind).abnormal is abnormal


def test_exit_describes_itself_with_its_exception() -> None:
    assert str(Exit(ExitKind.NORMAL)) == "normal"
    assert str(Exit(ExitKind.FAILURE, ValueError("bad"))) == "failure: ValueError('bad')"


# -- Supervisor arguments (validated before anything starts) ------------------------------------


class _Idle(GeventActor):
    pass


def test_supervisor_rejects_an_unknown_strategy_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="one_for_one"):
        Supervisor(strategy="one_for_some")


def test_supervisor_rejects_duplicate_child_ids() -> None:
    specs = [ChildSpec(id="a", start=_Idle.start), ChildSpec(id="a", start=_Idle.start)]

    with pytest.raises(ValueError, match="duplicate child id 'a'"):
        Supervisor(specs)


def test_supervisor_rejects_children_that_are_not_specs() -> None:
    with pytest.raises(TypeError, match="ChildSpec"):
        Supervisor([_Idle.start])  # type: ignore[list-item]


def test_supervisor_rejects_impossible_intensity() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        Supervisor(max_restarts=-1)


def test_supervisor_accepts_strategy_names_as_strings() -> None:
    assert Supervisor(strategy="rest_for_one").strategy is Strategy.REST_FOR_ONE
