"""Actor lookups at the scale of a busy server: by URN through Pykka's ActorRegistry, by name
through register_name/whereis. (Their cost is measured in tests/benchmarks/runtime.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pykka import ActorDeadError, ActorRef, ActorRegistry, ThreadingActor

from supervisors import (
    GeventActor,
    NameTaken,
    kill,
    register_name,
    unregister_name,
    whereis,
)

MANY = 10_000  # actors; the size of a busy node's connection set
WAIT = 5.0  # seconds


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        if issubclass(ref.actor_class, GeventActor):
            kill(ref)
        else:
            ref.stop(timeout=WAIT)


class Idle(GeventActor):
    pass


class OtherIdle(GeventActor):
    pass


@pytest.fixture
def many() -> list[ActorRef[Any]]:
    return [Idle.start() for _ in range(MANY)]


@pytest.mark.slow  # bulk: thousands of actors
def test_urn_lookups_and_start_order_hold_among_many_actors(many: list[ActorRef[Any]]) -> None:
    other = OtherIdle.start()

    assert all(ActorRegistry.get_by_urn(ref.actor_urn) is ref for ref in many)
    assert ActorRegistry.get_by_urn("urn:uuid:00000000-0000-4000-8000-000000000000") is None
    assert ActorRegistry.get_all() == [*many, other]
    assert ActorRegistry.get_by_class(OtherIdle) == [other]
    assert len(ActorRegistry.get_by_class(Idle)) == MANY


@pytest.mark.slow  # bulk: thousands of actors
def test_removing_many_actors_keeps_the_order_of_the_rest_and_empties_the_registry(
    many: list[ActorRef[Any]],
) -> None:
    for ref in many[1::2]:
        kill(ref)

    assert ActorRegistry.get_all() == many[0::2]
    assert ActorRegistry.get_by_urn(many[1].actor_urn) is None
    assert ActorRegistry.get_by_urn(many[2].actor_urn) is many[2]

    for ref in many[0::2]:
        ref.stop(block=False)
    many[-2].stop(timeout=WAIT)  # the last stop requested: the others were handled before it

    assert ActorRegistry.get_all() == []
    assert all(ActorRegistry.get_by_urn(ref.actor_urn) is None for ref in many)


def test_register_and_unregister_by_hand_as_pykka_allows() -> None:
    refs = [Idle.start() for _ in range(3)]
    ref = refs[1]

    ActorRegistry.unregister(ref)
    assert ActorRegistry.get_by_urn(ref.actor_urn) is None
    assert ref not in ActorRegistry.get_all()

    ActorRegistry.register(ref)
    assert ActorRegistry.get_by_urn(ref.actor_urn) is ref
    assert ActorRegistry.get_all()[-1] is ref


def test_unregistering_an_unknown_ref_is_harmless() -> None:
    ref, other = Idle.start(), Idle.start()
    ActorRegistry.unregister(ref)

    ActorRegistry.unregister(ref)

    assert ActorRegistry.get_all() == [other]


def test_threading_actors_share_the_same_index() -> None:
    gevent_ref = Idle.start()
    threading_ref = ThreadingActor.start()

    assert ActorRegistry.get_by_urn(threading_ref.actor_urn) is threading_ref
    assert ActorRegistry.get_all() == [gevent_ref, threading_ref]

    threading_ref.stop(timeout=WAIT)
    assert ActorRegistry.get_by_urn(threading_ref.actor_urn) is None


# -- names -------------------------------------------------------------------------------------


@pytest.mark.slow  # bulk: thousands of actors
def test_names_of_many_actors_are_found_and_released_when_they_end(
    many: list[ActorRef[Any]],
) -> None:
    for n, ref in enumerate(many):
        register_name(f"user:{n}", ref)

    assert all(whereis(f"user:{n}") is ref for n, ref in enumerate(many))
    assert whereis("user:nobody") is None

    for ref in many:
        kill(ref)

    assert all(whereis(f"user:{n}") is None for n in range(MANY))
    replacement = Idle.start()
    register_name("user:0", replacement)
    assert whereis("user:0") is replacement


def test_a_name_belongs_to_one_live_actor() -> None:
    holder, rival = Idle.start(), Idle.start()
    register_name("room:lobby", holder)

    with pytest.raises(NameTaken, match="room:lobby"):
        register_name("room:lobby", rival)
    assert whereis("room:lobby") is holder


def test_registering_the_same_name_twice_for_one_actor_is_allowed() -> None:
    ref = Idle.start()
    register_name("svc", ref)

    register_name("svc", ref)

    assert whereis("svc") is ref


def test_an_actor_may_have_several_names_all_released_when_it_ends() -> None:
    ref = Idle.start()
    register_name("a", ref)
    register_name("b", ref)

    ref.stop(timeout=WAIT)

    assert whereis("a") is None
    assert whereis("b") is None


def test_a_name_of_a_stopped_actor_can_be_taken_over() -> None:
    old = Idle.start()
    register_name("svc", old)
    old.stop(timeout=WAIT)
    new = Idle.start()

    register_name("svc", new)

    assert whereis("svc") is new


def test_unregister_name_releases_it_and_tolerates_unknown_names() -> None:
    ref = Idle.start()
    register_name("svc", ref)

    unregister_name("svc")
    unregister_name("never registered")

    assert whereis("svc") is None
    assert ref.is_alive()


def test_a_dead_actor_cannot_be_named() -> None:
    ref = Idle.start()
    ref.stop(timeout=WAIT)

    with pytest.raises(ActorDeadError):
        register_name("ghost", ref)
    assert whereis("ghost") is None
