"""Every use of Pykka's internals, in one place, each behind a small named function.

``GeventActor`` is a new Pykka runtime, and Pykka's public API does not cover everything a
runtime needs: the stop message, the dispatch of proxy calls, the actor behind a ref, the
registry's list. This module is the only code that touches those names; the rest of
``supervisors`` imports what it needs from here. Each name carries the version it was read
from (:data:`PYKKA_VERSION_READ`; setup.cfg pins ``pykka>=4.5,<4.6`` for that reason), and
:func:`shape_problems` checks that the installed Pykka still has the shape relied on, naming
what changed, so an upgrade fails one test loudly instead of many tests obscurely
(``tests/test_compat.py``).

Pykka's own hooks for implementors of new actor types (``Actor._create_actor_inbox``,
``_create_future``, ``_start_actor_loop``) are overridden by ``GeventActor`` rather than called;
they are checked here too, as is the envelope ``ActorRef.tell`` puts in an inbox.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, TypeVar

from pykka import Actor, ActorRef, ActorRegistry, Future
from pykka.messages import _ActorStop

if TYPE_CHECKING:
    import threading

    # Types only (for annotations elsewhere in supervisors), never imported at run time: their
    # modules are private to Pykka.
    from pykka._envelope import Envelope
    from pykka._future import GetHookFunc
    from pykka._types import OptExcInfo

__all__ = [
    "PYKKA_VERSION_READ",
    "ActorStop",
    "Envelope",
    "GetHookFunc",
    "OptExcInfo",
    "ShapeCheck",
    "actor_of",
    "dispatcher",
    "installed_version",
    "is_stop",
    "registry_lock",
    "replace_registry_refs",
    "set_get_by_urn",
    "shape_problems",
    "stop_message",
]

PYKKA_VERSION_READ = "4.5"
"""The Pykka minor version whose source these internals were read from."""

ActorStop: type = _ActorStop
"""The class of Pykka's stop request (``ActorRef.stop`` and ``Actor.stop`` send one). Exposed as
a class for the actor loop's per-message identity test (``message.__class__ is ActorStop``),
which a function call would slow down; elsewhere use :func:`is_stop`."""

R = TypeVar("R")


def stop_message() -> Any:
    """A new stop request, as ``ActorRef.stop`` sends: the actor stops once it reaches it."""
    return _ActorStop()


def is_stop(message: object) -> bool:
    """Whether ``message`` is Pykka's stop request."""
    return isinstance(message, _ActorStop)


def dispatcher(actor: Actor) -> Callable[[Any], Any]:
    """The actor's handler of one message, with Pykka's meaning: proxy calls, attribute gets
    and sets go to the actor's attributes, anything else to ``on_receive``.

    Bound once per run of the actor loop, so that handling a message costs no extra call.
    The stop request must be handled by the caller: Pykka's own handling of it assumes Pykka's
    loop.
    """
    return actor._handle_receive


def actor_of(ref: ActorRef[Any]) -> Actor | None:
    """The actor behind ``ref``, or None once it has been garbage-collected.

    Pykka's ``ActorRef`` holds the actor by weak reference and offers no public way to reach
    it; monitors and ``kill`` need the actor itself.
    """
    return ref._actor_weakref()


def registry_lock() -> threading.RLock:
    """The lock Pykka's ``ActorRegistry`` holds while it reads or changes its refs."""
    return ActorRegistry._actor_refs_lock


def replace_registry_refs(make: Callable[[list[ActorRef[Any]]], R]) -> R:
    """Give ``ActorRegistry`` a new container of refs, made from the refs it holds now.

    Pykka keeps them in a list that its classmethods use through ``append``, ``remove``,
    ``in``, slicing and iteration; ``make`` must return an object that supports those.
    Returns what ``make`` returned.
    """
    with ActorRegistry._actor_refs_lock:
        refs = make(list(ActorRegistry._actor_refs))
        ActorRegistry._actor_refs = refs  # type: ignore[assignment]
    return refs


def set_get_by_urn(lookup: Callable[[str], ActorRef[Any] | None]) -> None:
    """Make ``ActorRegistry.get_by_urn(urn)`` call ``lookup(urn)`` (under the registry lock)."""

    def get_by_urn(cls: type[ActorRegistry], actor_urn: str) -> ActorRef[Any] | None:
        with cls._actor_refs_lock:
            return lookup(actor_urn)

    ActorRegistry.get_by_urn = classmethod(get_by_urn)  # type: ignore[method-assign,assignment]


# -- the shape relied on -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShapeCheck:
    """One internal relied on, and a check that returns what changed (None when unchanged)."""

    name: str
    used_for: str
    check: Callable[[], str | None]


def _has_params(func: Any, expected: list[str]) -> str | None:
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return f"{func!r} has no readable signature"
    if params != expected:
        return f"its parameters are now {params}, not {expected}"
    return None


class _ProbeInbox:
    """An inbox that keeps what is put in it, to see the envelopes ``ActorRef`` makes."""

    def __init__(self) -> None:
        self.put_items: list[Any] = []

    def put(self, envelope: Any) -> None:
        self.put_items.append(envelope)


class _ProbeActor(Actor):
    """A runtime that records Pykka's calls of the hooks for new actor types."""

    loop_started = 0

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _ProbeInbox()

    @staticmethod
    def _create_future() -> Future[Any]:
        return Future()

    def _start_actor_loop(self) -> None:
        type(self).loop_started += 1


def _stop_class() -> str | None:
    if not isinstance(_ActorStop, type):
        return "pykka.messages._ActorStop is no longer a class"
    try:
        _ActorStop()
    except TypeError as exc:
        return f"_ActorStop() can no longer be made without arguments: {exc}"
    actor = _ProbeActor()
    actor.stop()
    actor.actor_ref.stop(block=False)
    sent = [envelope.message for envelope in actor.actor_inbox.put_items]  # type: ignore[attr-defined]
    if [message.__class__ for message in sent] != [_ActorStop, _ActorStop]:
        return f"Actor.stop and ActorRef.stop now send {sent!r}, not an _ActorStop() each"
    return None


def _handle_receive() -> str | None:
    method = getattr(Actor, "_handle_receive", None)
    if not callable(method):
        return "Actor._handle_receive is gone"
    return _has_params(method, ["self", "message"])


def _actor_weakref() -> str | None:
    actor = _ProbeActor()
    ref = actor.actor_ref
    if not callable(getattr(ref, "_actor_weakref", None)):
        return "ActorRef._actor_weakref is gone"
    if actor_of(ref) is not actor:
        return "ActorRef._actor_weakref() no longer returns the actor"
    return None


# The methods of its refs container that Pykka's ActorRegistry calls; with ``in``, iteration and
# slicing, what the index of supervisors/_registry.py implements.
_REGISTRY_METHODS_USED = frozenset({"append", "remove"})
_REGISTRY_METHOD_CALL = re.compile(r"_actor_refs\.(\w+)")


def _registry_refs() -> str | None:
    lock = getattr(ActorRegistry, "_actor_refs_lock", None)
    if lock is None or not hasattr(lock, "__enter__"):
        return "ActorRegistry._actor_refs_lock is gone or no longer a lock"
    if not hasattr(ActorRegistry, "_actor_refs"):
        return "ActorRegistry._actor_refs is gone"
    called = set(_REGISTRY_METHOD_CALL.findall(inspect.getsource(ActorRegistry)))
    if not called <= _REGISTRY_METHODS_USED:
        return f"ActorRegistry now calls _actor_refs.{sorted(called - _REGISTRY_METHODS_USED)}"
    # The container is replaced at import, so its presence proves nothing: Pykka must still
    # keep its refs in it.
    ref = _ProbeActor().actor_ref
    ActorRegistry.register(ref)
    try:
        if ref not in ActorRegistry._actor_refs or ref not in ActorRegistry.get_all():
            return "ActorRegistry.register no longer keeps the ref in _actor_refs"
    finally:
        ActorRegistry.unregister(ref)
    if ref in ActorRegistry._actor_refs:
        return "ActorRegistry.unregister no longer removes the ref from _actor_refs"
    if not isinstance(inspect.getattr_static(ActorRegistry, "get_by_urn"), classmethod):
        return "ActorRegistry.get_by_urn is no longer a classmethod"
    return None


def _future_get_hook() -> str | None:
    future: Future[Any] = Future()
    future.set_get_hook(lambda timeout: ("hooked", timeout))
    try:
        value = future.get(timeout=1.5)
    except Exception as exc:
        return f"Future.get no longer calls the get hook: {exc!r}"
    if value != ("hooked", 1.5):
        return f"Future.get returned {value!r}, not the get hook's value"
    return None


def _runtime_hooks() -> str | None:
    for name in ("_create_actor_inbox", "_create_future"):
        if not isinstance(inspect.getattr_static(Actor, name, None), staticmethod):
            return f"Actor.{name} is gone or no longer a staticmethod"
    actor = _ProbeActor()
    if not isinstance(actor.actor_inbox, _ProbeInbox):
        return "Actor.__init__ no longer makes its inbox with _create_actor_inbox()"
    if actor.actor_ref.actor_inbox is not actor.actor_inbox:
        return "ActorRef no longer shares its actor's inbox"
    before = _ProbeActor.loop_started
    ref = _ProbeActor.start()
    try:
        if _ProbeActor.loop_started != before + 1:
            return "Actor.start no longer calls _start_actor_loop() once"
    finally:
        ActorRegistry.unregister(ref)
    return None


def _envelope() -> str | None:
    actor = _ProbeActor()
    ref = actor.actor_ref
    ref.tell("told")
    ref.ask("asked", block=False)
    put = actor.actor_inbox.put_items  # type: ignore[attr-defined]
    if len(put) != 2:
        return f"tell and ask put {len(put)} envelopes in the inbox, not 2"
    told, asked = put
    if (told.message, told.reply_to) != ("told", None):
        return "a told envelope no longer has .message, and None in .reply_to"
    if asked.message != "asked" or not isinstance(asked.reply_to, Future):
        return "an asked envelope no longer has .message, and a Future in .reply_to"
    return None


SHAPE_CHECKS: tuple[ShapeCheck, ...] = (
    ShapeCheck("messages._ActorStop", "stop requests (actor loop, supervisors)", _stop_class),
    ShapeCheck("Actor._handle_receive", "dispatch of proxy calls and messages", _handle_receive),
    ShapeCheck("ActorRef._actor_weakref", "monitor() and kill() reach the actor", _actor_weakref),
    ShapeCheck(
        "ActorRegistry._actor_refs", "O(1) registry (supervisors/_registry.py)", _registry_refs
    ),
    ShapeCheck("Future get hooks", "GeventFuture.get of filter, map, join, stop", _future_get_hook),
    ShapeCheck("Actor runtime hooks", "GeventActor's inbox, future and loop", _runtime_hooks),
    ShapeCheck("Envelope", "Mailbox reads .message and .reply_to", _envelope),
)
"""What ``supervisors`` relies on in Pykka, each with its check."""


def installed_version() -> str:
    """The version of the installed Pykka."""
    return version("pykka")


def shape_problems() -> list[str]:
    """What changed in the installed Pykka, one sentence per internal; empty when nothing did."""
    installed = installed_version()
    problems = []
    for item in SHAPE_CHECKS:
        try:
            problem = item.check()
        except Exception as exc:
            problem = f"checking it raised {exc!r}"
        if problem is not None:
            problems.append(
                f"pykka {installed} (internals read from {PYKKA_VERSION_READ}) changed "
                f"{item.name}, used for {item.used_for}: {problem}"
            )
    return problems
