"""``actorim serve --workers N``: N node processes on one port, as one cluster.

The parent process runs no node: it starts N workers (``actorim serve`` with one worker each),
which all bind the same port with ``SO_REUSEPORT`` so that the kernel spreads new connections
over them, and which share state through Redis as any cluster's nodes do. The parent restarts a
worker that dies (with a back-off, so a worker that cannot start does not spin), forwards SIGTERM
and SIGINT so that every worker drains, and exits 0 once they all have. A worker that cannot
bind the port ends the run instead (with its exit status): a restart would fail the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import gevent
from gevent.event import Event

from actorim.config import Config, config_environment
from supervisors import Backoff

__all__ = ["EXIT_CANNOT_LISTEN", "run_workers"]

logger = logging.getLogger("actorim.workers")

# Exit status when the port cannot be bound (EX_UNAVAILABLE): a setting to fix, not a crash.
# Here rather than in the cli, which runs the workers: a worker's status ends the run.
EXIT_CANNOT_LISTEN = 69

# A worker that lived this long before dying was healthy: its restart back-off starts again.
HEALTHY_AFTER_S = 30.0
RESTART_BACKOFF = Backoff(floor=0.5, cap=15.0)


def run_workers(config: Config) -> int:
    """Run ``config.workers`` node processes until SIGTERM/SIGINT; returns the exit status."""
    stopping = Event()
    workers: dict[int, subprocess.Popen[bytes]] = {}
    failed: list[int] = []  # a status that ends the run: a restart would fail the same way

    def spawn(index: int) -> subprocess.Popen[bytes]:
        node_id = f"{config.node_id}-{index}" if config.node_id else ""
        worker = config.with_(workers=1, reuse_port=True, node_id=node_id)
        env = {**os.environ, **config_environment(worker)}
        proc = subprocess.Popen([sys.executable, "-m", "actorim", "serve"], env=env)
        logger.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    def keep(index: int) -> None:
        attempt = 0
        while not stopping.is_set():
            started = time.monotonic()
            proc = workers[index] = spawn(index)
            status = proc.wait()
            if stopping.is_set():
                return
            if status == EXIT_CANNOT_LISTEN:  # the worker said why on stderr
                failed.append(status)
                stop(f"worker {index} cannot listen")
                return
            if time.monotonic() - started > HEALTHY_AFTER_S:
                attempt = 0
            delay = RESTART_BACKOFF.delay(attempt)
            attempt += 1
            logger.error("worker %d exited with %d: restarting in %.1fs", index, status, delay)
            stopping.wait(delay)

    def stop(why: str) -> None:
        logger.info("%s: stopping %d workers", why, len(workers))
        stopping.set()
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop, f"signal {signum}")
    keepers = [gevent.spawn(keep, i) for i in range(config.workers)]
    stopping.wait()
    gevent.joinall(keepers)
    statuses = [proc.wait() for proc in workers.values()]
    logger.info("all workers stopped: %s", statuses)
    if failed:
        return failed[0]
    return 0 if all(s == 0 for s in statuses) else 1
