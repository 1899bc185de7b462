"""Child specifications: what a supervisor starts, restarts and stops, as validated data."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pykka import ActorRef

from supervisors._backoff import Backoff

__all__ = ["ChildKind", "ChildSpec", "Restart"]


class Restart(StrEnum):
    """When a child is restarted (OTP's restart types).

    ``PERMANENT``: always. ``TRANSIENT``: only after an abnormal exit (a failure or a kill), not
    after it stopped normally. ``TEMPORARY``: never; it is removed from the supervisor when it ends.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildKind(StrEnum):
    """A worker, or a supervisor (whose default shutdown is to wait for its whole subtree)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


_DEFAULT_WORKER_SHUTDOWN = 5.0
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run one child.

    * ``id``: unique within its supervisor.
    * ``start``: any callable returning a Pykka ``ActorRef`` of a ``GeventActor``, e.g.
      ``SomeActor.start``; called as ``start(*args, **kwargs)``.
    * ``restart`` (default ``"permanent"``): see :class:`Restart`.
    * ``shutdown`` (default 5 s for workers, ``None`` for supervisors): seconds to wait for
      ``on_stop`` before the child is killed; ``0`` kills at once (OTP's ``brutal_kill``);
      ``None`` waits forever, which is right for a supervisor, whose children have their own
      limits, and wrong for a worker that might hang.
    * ``kind`` (default ``"worker"``): ``"supervisor"`` for a nested supervisor.
    * ``backoff`` (default ``None``): delay restarts on an exponential schedule, for children
      that depend on an outside service. Restarts are still counted for the intensity.
    * ``start_timeout`` (default 5 s): how long ``on_start`` may take; longer counts as a failed
      start and the child is killed.
    """

    id: Hashable
    start: Callable[..., ActorRef[Any]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = _UNSET
    kind: ChildKind = ChildKind.WORKER
    backoff: Backoff | None = None
    start_timeout: float = 5.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.id is None:
            _bad("id", "must not be None")
        if not callable(self.start):
            _bad("start", f"must be callable (e.g. SomeActor.start), got {self.start!r}")
        if not isinstance(self.args, tuple):
            set_(self, "args", tuple(self.args))
        try:
            set_(self, "restart", Restart(self.restart))
        except ValueError:
            _bad("restart", f"must be one of {[r.value for r in Restart]}, got {self.restart!r}")
        try:
            set_(self, "kind", ChildKind(self.kind))
        except ValueError:
            _bad("kind", f"must be one of {[k.value for k in ChildKind]}, got {self.kind!r}")
        if self.shutdown is _UNSET:
            default = None if self.kind is ChildKind.SUPERVISOR else _DEFAULT_WORKER_SHUTDOWN
            set_(self, "shutdown", default)
        elif self.shutdown is not None and (
            not isinstance(self.shutdown, int | float) or self.shutdown < 0
        ):
            _bad("shutdown", f"must be seconds >= 0 or None, got {self.shutdown!r}")
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            _bad("backoff", f"must be a Backoff or None, got {self.backoff!r}")
        if not isinstance(self.start_timeout, int | float) or self.start_timeout <= 0:
            _bad("start_timeout", f"must be seconds > 0, got {self.start_timeout!r}")


def _bad(field_name: str, problem: str) -> None:
    msg = f"ChildSpec.{field_name} {problem}"
    raise ValueError(msg)
