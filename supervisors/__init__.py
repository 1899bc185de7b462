"""OTP-style supervision for Pykka actors running on gevent greenlets."""

from supervisors._actor import ActorKilled, GeventActor, Monitor, demonitor, kill, monitor
from supervisors._backoff import Backoff
from supervisors._events import EventKind, SupervisorEvent, subscribe
from supervisors._exit import Exit, ExitKind
from supervisors._future import GeventFuture
from supervisors._intensity import RestartIntensity
from supervisors._mailbox import MailboxFull, MailboxOverflow, Overflow
from supervisors._registry import NameTaken, register_name, unregister_name, whereis
from supervisors._spec import ChildKind, ChildSpec, Restart
from supervisors._supervisor import (
    ChildExists,
    ChildInfo,
    ChildNotFound,
    ChildRunning,
    Strategy,
    Supervisor,
    SupervisorEscalation,
    start_child_nowait,
)

__all__ = [
    "ActorKilled",
    "Backoff",
    "ChildExists",
    "ChildInfo",
    "ChildKind",
    "ChildNotFound",
    "ChildRunning",
    "ChildSpec",
    "EventKind",
    "Exit",
    "ExitKind",
    "GeventActor",
    "GeventFuture",
    "MailboxFull",
    "MailboxOverflow",
    "Monitor",
    "NameTaken",
    "Overflow",
    "Restart",
    "RestartIntensity",
    "Strategy",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorEvent",
    "demonitor",
    "kill",
    "monitor",
    "register_name",
    "start_child_nowait",
    "subscribe",
    "unregister_name",
    "whereis",
]
