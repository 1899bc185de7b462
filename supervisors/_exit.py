"""Why an actor ended: the vocabulary supervisors decide restarts by (OTP's exit reasons)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Exit", "ExitKind"]


class ExitKind(StrEnum):
    """How an actor ended.

    ``NORMAL``: it was asked to stop (or stopped itself) and ``on_stop`` returned.
    ``FAILURE``: an exception escaped ``on_start``, a handler or ``on_stop``, or its mailbox
    overflowed under the ``fail`` policy. ``KILLED``: its greenlet was killed (a brutal kill, a
    ``GreenletExit``).
    ``NOPROC``: it was already gone when someone started to monitor it.
    """

    NORMAL = "normal"
    FAILURE = "failure"
    KILLED = "killed"
    NOPROC = "noproc"


@dataclass(frozen=True, slots=True)
class Exit:
    """An actor's end; ``exception`` is set for failures."""

    kind: ExitKind
    exception: BaseException | None = None

    @property
    def abnormal(self) -> bool:
        """True when OTP would restart a *transient* child: a failure or a kill."""
        return self.kind in (ExitKind.FAILURE, ExitKind.KILLED)

    def __str__(self) -> str:
        if self.exception is None:
            return self.kind.value
        return f"{self.kind.value}: {self.exception!r}"


NORMAL = Exit(ExitKind.NORMAL)
KILLED = Exit(ExitKind.KILLED)
NOPROC = Exit(ExitKind.NOPROC)
