"""Pykka's actor API, proved the same way on GeventActor and on pykka.ThreadingActor.

Every test here takes the ``runtime`` fixture and runs once per actor runtime, as Pykka's own
suite does, so code written against Pykka keeps working when its actors become GeventActors.
The one deliberate difference (``crash_on_ask_error``) is tested explicitly at the end.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pykka import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorRegistry,
    Future,
    ThreadingActor,
    Timeout,
    get_all,
)

from supervisors import ExitKind, GeventActor, GeventFuture, kill, monitor

WAIT = 5.0  # seconds; generous upper bound for events that arrive in microseconds


@dataclass(frozen=True)
class Runtime:
    name: str
    actor_class: type[Actor]
    # The same API as Pykka's, except where GeventActor deliberately differs.
    pykka_compatible_class: type[Actor]
    future_class: Callable[[], Future[Any]]


class _LenientGeventActor(GeventActor):
    crash_on_ask_error = False


RUNTIMES = [
    pytest.param(
        Runtime("gevent", GeventActor, _LenientGeventActor, GeventFuture), id="GeventActor"
    ),
    pytest.param(
        Runtime("threading", ThreadingActor, ThreadingActor, ThreadingActor._create_future),
        id="ThreadingActor",
    ),
]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> Runtime:
    return request.param


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        if issubclass(ref.actor_class, GeventActor):
            kill(ref)
        else:
            ref.stop(timeout=WAIT)


class Events:
    def __init__(self) -> None:
        self.on_start = threading.Event()
        self.on_stop = threading.Event()
        self.on_failure = threading.Event()
        self.greeted = threading.Event()
        self.registered_before_on_start = threading.Event()


@pytest.fixture
def events() -> Events:
    return Events()


def make_actor_class(base: type[Actor]) -> type[Actor]:
    class Subject(base):  # type: ignore[valid-type,misc]
        def __init__(self, events: Events | None = None, *, label: str = "") -> None:
            super().__init__()
            self.events = events or Events()
            self.label = label
            self.received: list[Any] = []
            self.counter = 0

        def on_start(self) -> None:
            if ActorRegistry.get_by_urn(self.actor_urn) is not None:
                self.events.registered_before_on_start.set()
            self.events.on_start.set()

        def on_stop(self) -> None:
            self.events.on_stop.set()

        def on_failure(self, *_exc_info: Any) -> None:
            self.events.on_failure.set()

        def on_receive(self, message: Any) -> Any:
            if isinstance(message, dict):
                command = message.get("command")
                if command == "raise":
                    raise ValueError(message.get("text", "boom"))
                if command == "call":
                    return message["callback"]()
                if command == "greet":
                    self.events.greeted.set()
                    return None
                if command == "message self then stop":
                    self.actor_ref.tell({"command": "greet"})
                    self.stop()
                    return None
                if command == "stop twice":
                    self.stop()
                    self.stop()
                    return None
            self.received.append(message)
            return message

        def add(self, a: int, b: int) -> int:
            return a + b

        def increment(self) -> int:
            self.counter += 1
            return self.counter

        def fail(self, text: str) -> None:
            raise ValueError(text)

        def ask_other(self, other: ActorRef[Any], message: Any) -> Any:
            return other.ask(message, timeout=WAIT)

    Subject.__name__ = f"Subject{base.__name__}"
    return Subject


@pytest.fixture
def actor_class(runtime: Runtime) -> type[Actor]:
    return make_actor_class(runtime.actor_class)


@pytest.fixture
def lenient_class(runtime: Runtime) -> type[Actor]:
    return make_actor_class(runtime.pykka_compatible_class)


@pytest.fixture
def actor_ref(actor_class: type[Actor], events: Events) -> ActorRef[Any]:
    return actor_class.start(events)


# -- starting ----------------------------------------------------------------------------------


def test_start_returns_a_live_ref_with_a_uuid4_urn(actor_ref: ActorRef[Any]) -> None:
    assert actor_ref.is_alive()
    assert uuid.UUID(actor_ref.actor_urn).version == 4


def test_each_actor_gets_a_unique_urn(actor_class: type[Actor]) -> None:
    refs = [actor_class.start() for _ in range(3)]

    assert len({ref.actor_urn for ref in refs}) == 3


def test_start_passes_its_arguments_to_the_constructor(actor_class: type[Actor]) -> None:
    ref = actor_class.start(label="named")

    assert ref.proxy().label.get(timeout=WAIT) == "named"


def test_actor_is_registered_before_on_start_runs(actor_ref: ActorRef[Any], events: Events) -> None:
    assert events.on_start.wait(WAIT)
    assert events.registered_before_on_start.is_set()


def test_on_start_runs_before_the_first_message(actor_class: type[Actor], events: Events) -> None:
    ref = actor_class.start(events)

    started_first = ref.ask({"command": "call", "callback": events.on_start.is_set})

    assert started_first is True


def test_on_start_failure_stops_the_actor(runtime: Runtime, events: Events) -> None:
    class FailsOnStart(runtime.actor_class):  # type: ignore[name-defined,misc]
        def on_start(self) -> None:
            events.on_start.set()
            raise RuntimeError("no start")

    ref = FailsOnStart.start()

    assert ref.actor_stopped.wait(WAIT)
    assert not ref.is_alive()
    assert ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_on_start_can_stop_the_actor_before_any_message(runtime: Runtime, events: Events) -> None:
    class StopsAtOnce(runtime.actor_class):  # type: ignore[name-defined,misc]
        def on_start(self) -> None:
            self.stop()

        def on_stop(self) -> None:
            events.on_stop.set()

    ref = StopsAtOnce.start()

    assert events.on_stop.wait(WAIT)
    assert ref.actor_stopped.wait(WAIT)


# -- tell and ask ------------------------------------------------------------------------------


def test_tell_delivers_messages_in_the_order_sent(actor_ref: ActorRef[Any]) -> None:
    for n in range(100):
        actor_ref.tell(n)

    assert actor_ref.proxy().received.get(timeout=WAIT) == list(range(100))


def test_ask_returns_the_reply(actor_ref: ActorRef[Any]) -> None:
    assert actor_ref.ask("ping", timeout=WAIT) == "ping"


def test_ask_without_blocking_returns_a_future_of_the_reply(actor_ref: ActorRef[Any]) -> None:
    future = actor_ref.ask("ping", block=False)

    assert isinstance(future, Future)
    assert future.get(timeout=WAIT) == "ping"


def test_ask_raises_the_handlers_exception_in_the_caller(actor_ref: ActorRef[Any]) -> None:
    with pytest.raises(ValueError, match="told you"):
        actor_ref.ask({"command": "raise", "text": "told you"}, timeout=WAIT)


def test_ask_times_out_with_pykka_timeout(actor_ref: ActorRef[Any]) -> None:
    gate = threading.Event()
    actor_ref.tell({"command": "call", "callback": gate.wait})

    with pytest.raises(Timeout):
        actor_ref.ask("late", timeout=0.05)
    gate.set()
    assert actor_ref.ask("after", timeout=WAIT) == "after"


def test_an_actor_can_ask_another_actor(actor_class: type[Actor]) -> None:
    first = actor_class.start()
    second = actor_class.start()

    assert first.proxy().ask_other(second, "relayed").get(timeout=WAIT) == "relayed"


def test_tell_to_a_stopped_actor_raises_actor_dead_error(actor_ref: ActorRef[Any]) -> None:
    actor_ref.stop()

    with pytest.raises(ActorDeadError):
        actor_ref.tell("too late")


def test_ask_to_a_stopped_actor_raises_actor_dead_error(actor_ref: ActorRef[Any]) -> None:
    actor_ref.stop()

    with pytest.raises(ActorDeadError):
        actor_ref.ask("too late", timeout=WAIT)


# -- failures in handlers ----------------------------------------------------------------------


def test_exception_in_a_told_message_calls_on_failure_and_stops_the_actor(
    actor_ref: ActorRef[Any], events: Events
) -> None:
    actor_ref.tell({"command": "raise"})

    assert events.on_failure.wait(WAIT)
    assert actor_ref.actor_stopped.wait(WAIT)
    assert not events.on_stop.is_set()
    assert ActorRegistry.get_by_urn(actor_ref.actor_urn) is None


def test_on_stop_failure_still_stops_the_actor(runtime: Runtime) -> None:
    class FailsOnStop(runtime.actor_class):  # type: ignore[name-defined,misc]
        def on_stop(self) -> None:
            raise RuntimeError("no clean stop")

    ref = FailsOnStop.start()
    ref.stop(timeout=WAIT)

    assert not ref.is_alive()
    assert ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_pykka_compatible_actor_survives_an_exception_in_an_asked_message(
    lenient_class: type[Actor], events: Events
) -> None:
    ref = lenient_class.start(events)

    with pytest.raises(ValueError, match="boom"):
        ref.ask({"command": "raise"}, timeout=WAIT)

    assert ref.ask("still here", timeout=WAIT) == "still here"
    assert not events.on_failure.is_set()


# -- proxies -----------------------------------------------------------------------------------


def test_proxy_attribute_read_returns_a_future_of_the_value(actor_ref: ActorRef[Any]) -> None:
    proxy = actor_ref.proxy()

    value = proxy.counter

    assert isinstance(value, Future)
    assert value.get(timeout=WAIT) == 0


def test_proxy_attribute_assignment_sets_the_field_on_the_actor(actor_ref: ActorRef[Any]) -> None:
    proxy = actor_ref.proxy()

    proxy.counter = 41

    assert proxy.increment().get(timeout=WAIT) == 42


def test_proxy_method_call_returns_a_future_of_the_result(actor_ref: ActorRef[Any]) -> None:
    assert actor_ref.proxy().add(2, b=3).get(timeout=WAIT) == 5


def test_proxy_method_calls_run_in_order(actor_ref: ActorRef[Any]) -> None:
    proxy = actor_ref.proxy()

    futures = [proxy.increment() for _ in range(10)]

    assert get_all(futures, timeout=WAIT) == list(range(1, 11))


def test_proxy_method_exception_is_raised_by_the_future(lenient_class: type[Actor]) -> None:
    proxy = lenient_class.start().proxy()

    future = proxy.fail("from the proxy")

    with pytest.raises(ValueError, match="from the proxy"):
        future.get(timeout=WAIT)


def test_proxy_of_a_dead_actor_raises_actor_dead_error(actor_ref: ActorRef[Any]) -> None:
    actor_ref.stop()

    with pytest.raises(ActorDeadError):
        actor_ref.proxy()


# -- futures -----------------------------------------------------------------------------------


def test_future_get_returns_the_value_set_on_it(runtime: Runtime) -> None:
    future = runtime.future_class()
    future.set(7)

    assert future.get(timeout=WAIT) == 7
    assert future.get() == 7


def test_future_get_raises_the_exception_set_on_it(runtime: Runtime) -> None:
    future = runtime.future_class()
    try:
        raise KeyError("missing")
    except KeyError:
        future.set_exception()

    with pytest.raises(KeyError, match="missing"):
        future.get(timeout=WAIT)


def test_future_get_times_out_with_pykka_timeout(runtime: Runtime) -> None:
    with pytest.raises(Timeout):
        runtime.future_class().get(timeout=0.01)


def test_future_can_be_set_only_once(runtime: Runtime) -> None:
    future = runtime.future_class()
    future.set(1)

    with pytest.raises(Exception):  # noqa: B017 - queue.Full, as in Pykka
        future.set(2)


def test_future_map_transforms_the_value(actor_ref: ActorRef[Any]) -> None:
    future = actor_ref.ask({"a": 1}, block=False).map(lambda reply: reply["a"] + 1)

    assert future.get(timeout=WAIT) == 2


def test_future_join_collects_results_in_order(actor_class: type[Actor]) -> None:
    a, b, c = (actor_class.start() for _ in range(3))

    joined = a.ask("a", block=False).join(b.ask("b", block=False), c.ask("c", block=False))

    assert joined.get(timeout=WAIT) == ["a", "b", "c"]


def test_future_filter_and_reduce(actor_ref: ActorRef[Any]) -> None:
    numbers = actor_ref.ask([1, 5, 12, 20], block=False)

    assert numbers.filter(lambda n: n > 4).get(timeout=WAIT) == [5, 12, 20]
    assert numbers.reduce(lambda acc, n: acc + n, 0).get(timeout=WAIT) == 38


def test_get_all_collects_every_future(actor_class: type[Actor]) -> None:
    refs = [actor_class.start() for _ in range(5)]

    assert get_all([ref.ask(n, block=False) for n, ref in enumerate(refs)], timeout=WAIT) == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_get_all_times_out_with_pykka_timeout(runtime: Runtime) -> None:
    done = runtime.future_class()
    done.set(1)

    with pytest.raises(Timeout):
        get_all([done, runtime.future_class()], timeout=0.01)


# -- ActorRegistry -----------------------------------------------------------------------------


def test_registry_get_all_lists_running_actors_in_start_order(actor_class: type[Actor]) -> None:
    refs = [actor_class.start() for _ in range(5)]

    assert ActorRegistry.get_all() == refs


def test_registry_get_by_class_includes_subclasses(actor_class: type[Actor]) -> None:
    class Special(actor_class):  # type: ignore[valid-type,misc]
        pass

    plain = actor_class.start()
    special = Special.start()

    assert ActorRegistry.get_by_class(actor_class) == [plain, special]
    assert ActorRegistry.get_by_class(Special) == [special]


def test_registry_get_by_class_name(actor_class: type[Actor]) -> None:
    ref = actor_class.start()

    assert ActorRegistry.get_by_class_name(actor_class.__name__) == [ref]
    assert ActorRegistry.get_by_class_name("NoSuchActor") == []


def test_registry_get_by_urn_finds_the_actor_until_it_stops(actor_ref: ActorRef[Any]) -> None:
    assert ActorRegistry.get_by_urn(actor_ref.actor_urn) is actor_ref

    actor_ref.stop()

    assert ActorRegistry.get_by_urn(actor_ref.actor_urn) is None


def test_registry_broadcast_reaches_every_actor_of_the_class(actor_class: type[Actor]) -> None:
    class Other(actor_class):  # type: ignore[valid-type,misc]
        pass

    plain = [actor_class.start() for _ in range(3)]
    other = Other.start()

    ActorRegistry.broadcast("to subclasses too", target_class=actor_class)
    ActorRegistry.broadcast("to others only", target_class="Other")
    ActorRegistry.broadcast("to all")

    for ref in plain:
        assert ref.proxy().received.get(timeout=WAIT) == ["to subclasses too", "to all"]
    assert other.proxy().received.get(timeout=WAIT) == [
        "to subclasses too",
        "to others only",
        "to all",
    ]


def test_registry_stop_all_stops_actors_in_reverse_start_order(runtime: Runtime) -> None:
    stopped: list[int] = []

    class Numbered(runtime.actor_class):  # type: ignore[name-defined,misc]
        def __init__(self, number: int) -> None:
            super().__init__()
            self.number = number

        def on_stop(self) -> None:
            stopped.append(self.number)

    refs = [Numbered.start(n) for n in range(5)]

    assert ActorRegistry.stop_all(timeout=WAIT) == [True] * 5
    assert stopped == [4, 3, 2, 1, 0]
    assert not any(ref.is_alive() for ref in refs)
    assert ActorRegistry.get_all() == []


# -- stopping ----------------------------------------------------------------------------------


def test_stop_runs_on_stop_and_unregisters(actor_ref: ActorRef[Any], events: Events) -> None:
    assert actor_ref.stop(timeout=WAIT) is True

    assert events.on_stop.is_set()
    assert not actor_ref.is_alive()
    assert ActorRegistry.get_all() == []


def test_stop_of_a_dead_actor_returns_false(actor_ref: ActorRef[Any]) -> None:
    actor_ref.stop()

    assert actor_ref.stop(timeout=WAIT) is False


def test_messages_sent_before_stop_are_handled_first(actor_ref: ActorRef[Any]) -> None:
    for n in range(5):
        actor_ref.tell(n)
    replies = [actor_ref.ask(f"ask {n}", block=False) for n in range(3)]

    actor_ref.stop(timeout=WAIT)

    assert get_all(replies, timeout=WAIT) == ["ask 0", "ask 1", "ask 2"]


def test_asks_sent_after_stop_get_actor_dead_error(actor_ref: ActorRef[Any]) -> None:
    gate = threading.Event()
    actor_ref.tell({"command": "call", "callback": gate.wait})
    actor_ref.stop(block=False)
    late = actor_ref.ask("after stop", block=False)
    gate.set()

    with pytest.raises(ActorDeadError):
        late.get(timeout=WAIT)


def test_stop_requests_queued_behind_a_stop_are_answered(actor_ref: ActorRef[Any]) -> None:
    gate = threading.Event()
    actor_ref.tell({"command": "call", "callback": gate.wait})
    first = actor_ref.stop(block=False)
    second = actor_ref.stop(block=False)
    gate.set()

    assert first.get(timeout=WAIT) is True
    assert second.get(timeout=WAIT) is True


def test_actor_can_stop_itself_twice(actor_ref: ActorRef[Any]) -> None:
    actor_ref.ask({"command": "stop twice"}, timeout=WAIT)

    assert actor_ref.actor_stopped.wait(WAIT)


def test_messages_an_actor_sends_itself_before_stopping_are_handled(
    actor_ref: ActorRef[Any], events: Events
) -> None:
    actor_ref.tell({"command": "message self then stop"})

    assert events.greeted.wait(WAIT)
    assert events.on_stop.wait(WAIT)


# -- where GeventActor deliberately differs ----------------------------------------------------


def test_gevent_actor_by_default_fails_after_an_exception_in_an_asked_message(
    events: Events,
) -> None:
    ref = make_actor_class(GeventActor).start(events)
    exits: list[Any] = []
    monitor(ref, lambda _ref, reason: exits.append(reason))

    with pytest.raises(ValueError, match="boom"):
        ref.ask({"command": "raise"}, timeout=WAIT)

    assert ref.actor_stopped.wait(WAIT)
    assert events.on_failure.is_set()
    assert [e.kind for e in exits] == [ExitKind.FAILURE]
    assert isinstance(exits[0].exception, ValueError)


def test_pykka_threading_actor_survives_an_exception_in_an_asked_message() -> None:
    ref = make_actor_class(ThreadingActor).start()

    with pytest.raises(ValueError, match="boom"):
        ref.ask({"command": "raise"}, timeout=WAIT)

    assert ref.is_alive()


def test_crash_on_ask_error_false_gives_pykkas_behaviour_to_a_gevent_actor() -> None:
    class Lenient(make_actor_class(GeventActor)):  # type: ignore[misc]
        crash_on_ask_error = False

    ref = Lenient.start()

    with pytest.raises(ValueError, match="boom"):
        ref.ask({"command": "raise"}, timeout=WAIT)

    assert ref.ask("alive", timeout=WAIT) == "alive"
