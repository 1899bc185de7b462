"""The servers a reconnect storm runs against, and the publisher that keeps messages flowing.

The storm starts its own nodes (``actorim serve`` child processes with a data directory of their
own, a secret and an API key the run makes up), because it has to restart one: `NodeProcess`
starts, stops (SIGTERM: the node drains) and starts again on the same port and data directory,
and reads the CPU time the process used from ``/proc``. `Publisher` posts to the server API at a
steady rate, round-robin over the rooms, each message with an ``id`` so a retry after a failure
never stores it twice, and keeps the seqs the server acknowledged, per room: what every member
must end up holding.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from gevent import subprocess

__all__ = ["NodeProcess", "Publisher", "cpu_seconds"]

START_TIMEOUT_S = 60.0
"""Time a node has to import, open its store and answer ``/readyz``, on a loaded machine."""


POLL_S = 0.01
"""How often the port file and ``/readyz`` are polled while a node starts: the port file
appearing is the only sign it listens, and the storm measures from that instant."""

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


class NodeProcess:
    """One ``actorim serve`` child; ``args`` are its flags (``--redis-url`` and the like)."""

    def __init__(self, name: str, data_dir: Path, secret: str, args: tuple[str, ...]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.secret = secret
        self.args = args
        self.port = 0
        self.proc: Any = None
        self.cpu_at_exit = 0.0
        self.log_path = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> int:
        """Start the process; returns the ``time.time_ns`` at which its port file appeared
        (it listens), once ``/readyz`` answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "port"
        port_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "actorim", "serve", "--port", str(self.port)]
        command += ["--port-file", str(port_file), "--data-dir", str(self.data_dir)]
        command += ["--log-level", "WARNING", *self.args]
        env = {**os.environ, "ACTORIM_SECRET": self.secret}
        env.pop("PORT", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        listening_ns = 0
        while True:
            if not listening_ns:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    self.port = int(port_file.read_text())
                    listening_ns = time.time_ns()
            elif self._ready():
                return listening_ns
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} did not start:\n{self.log_tail()}")
            gevent.sleep(POLL_S)

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection(self.http, timeout=2)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def terminate(self) -> None:
        """SIGTERM: the node drains (1012 with hints, over ``drain_seconds``) and exits."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, grace_s: float) -> str:
        """Wait for the exit, keeping the CPU time it had just before (polled); past
        ``grace_s`` SIGKILL it, as a process manager does at the end of its grace period.
        Says how it ended."""
        started = time.monotonic()
        while self.proc.poll() is None:
            self.cpu_at_exit = max(self.cpu_at_exit, self.cpu())
            if time.monotonic() - started > grace_s:
                self.kill()
                return f"killed (SIGKILL) {grace_s:g} s after SIGTERM"
            gevent.sleep(0.05)
        return f"exited {self.proc.returncode} after {time.monotonic() - started:.1f} s"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""


class Publisher:
    """Posts ``rate`` messages per second over ``rooms`` to ``node``'s server API."""

    def __init__(self, node: NodeProcess, api_key: str, rooms: list[str], rate: float) -> None:
        self.node = node
        self.api_key = api_key
        self.rooms = rooms
        self.rate = rate
        self.acked: dict[str, list[int]] = {room: [] for room in rooms}
        self.refused = 0
        self._stopped = False
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._stopped = True
        if self._greenlet is not None:
            self._greenlet.join(timeout=15)

    @property
    def sent(self) -> int:
        return sum(len(seqs) for seqs in self.acked.values())

    def _run(self) -> None:
        started = time.monotonic()
        connection: http.client.HTTPConnection | None = None
        for n in range(sys.maxsize):
            gevent.sleep(max(0.0, started + n / self.rate - time.monotonic()))
            if self._stopped:
                break
            room = self.rooms[n % len(self.rooms)]
            body = json.dumps({"room": room, "body": f"storm {n}", "id": f"storm-{n}"})
            while not self._stopped:
                if connection is None:
                    connection = http.client.HTTPConnection(self.node.http, timeout=5)
                try:
                    seq = self._post(connection, body)
                except (OSError, http.client.HTTPException):
                    connection.close()
                    connection = None
                    seq = None
                if seq is not None:
                    self.acked[room].append(seq)
                    break
                self.refused += 1
                gevent.sleep(0.05)  # the node restarts, or sheds load: the same id again
        if connection is not None:
            connection.close()

    def _post(self, connection: http.client.HTTPConnection, body: str) -> int | None:
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        connection.request("POST", "/api/v1/messages", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            return None
        return int(json.loads(answer)["seq"])
