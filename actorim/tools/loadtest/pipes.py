"""What every load-test worker process shares: its pipe to the runner and its file limit.

A runner starts workers as fresh interpreters (`worker_command`, `worker_env`) and talks to
them in JSON lines (`actorim.tools.loadtest.wire`); a worker reads its commands in a greenlet
(`read_commands`), takes them in order (`expect`), and exits at once when its standard input
ends: the runner is gone or has what it needs.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent.fileobject import FileObjectPosix
from gevent.queue import Queue

import actorim
from actorim.tools.loadtest.wire import decode_line

__all__ = [
    "expect",
    "raise_file_limit",
    "read_commands",
    "worker_command",
    "worker_env",
    "worker_pipes",
]


def worker_command(module: str) -> list[str]:
    """The command line of a worker process running ``module``."""
    return [sys.executable, "-m", module]


def worker_env() -> dict[str, str]:
    """This environment, with the package on the path: the worker imports this very package,
    installed or not."""
    env = dict(os.environ)
    root = str(Path(actorim.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def worker_pipes() -> tuple[Callable[[bytes], None], Queue]:
    """In a worker process: how to write a line to the runner, and the queue of its commands
    (read from standard input from now on). Ctrl-C reaches the whole process group: the
    runner alone decides what happens next, so the worker ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdout = sys.stdout.buffer

    def emit(line: bytes) -> None:
        stdout.write(line)
        stdout.flush()

    commands: Queue = Queue()
    gevent.spawn(read_commands, FileObjectPosix(0, "rb", close=False), commands)
    return emit, commands


def raise_file_limit(clients: int) -> None:
    """Each client is a file descriptor: lift the soft limit as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = clients + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def read_commands(stdin: Any, commands: Queue) -> None:
    """Put every line from the runner on ``commands``; exit the process when input ends."""
    for line in stdin:
        if line.strip():
            commands.put(decode_line(line))
    # The runner is gone or has what it needs: nothing left to do here.
    sys.stdout.flush()
    os._exit(0)


def expect(commands: Queue, kind: str) -> dict[str, Any]:
    """The next command, which must be of ``kind``."""
    message = commands.get()
    if message.get("type") != kind:
        raise SystemExit(f"expected {kind!r} from the runner, got {message.get('type')!r}")
    return message
