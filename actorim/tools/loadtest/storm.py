"""``actorim bench storm``: a node drains under N clients; how long until all are back?

The scenario (docs/loadtest.md, "Reconnect storm"):

1. start the nodes: one (SQLite, restarted in place) or, with ``--redis-url``, ``--nodes``
   of them sharing that Redis; the clients' first node is node A;
2. connect N clients (worker processes, one user and one room each) to A and join them;
3. publish into their rooms at ``--rate`` through the server API of the node that stays up
   (of A itself when there is one node), and keep publishing;
4. SIGTERM node A: it drains, closing every connection with 1012 and a delay drawn from 0 to
   ``--spread``; each client waits its delay plus its own jitter and reconnects (to another
   node, or to A once it is restarted on the same port and data directory) with ``since``;
5. when every client has recovered (it holds every message up to its room's seq at its
   reconnect), stop publishing, hand the workers the acknowledged seqs of every room, and count
   per client and room what was lost or duplicated.

The report: the time from the drain (and, with one node, from the new process listening) until
all recovered, with percentiles of each client's recovery; the CPU time each server process used
meanwhile; lost and duplicated messages, which must be zero.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import gevent
from gevent import subprocess
from gevent.queue import Empty, Queue

from actorim.domain.apikeys import new_api_key
from actorim.tools.loadtest.pipes import worker_command, worker_env
from actorim.tools.loadtest.stormnodes import NodeProcess, Publisher
from actorim.tools.loadtest.stormoptions import StormOptions, StormOutcome, options_from
from actorim.tools.loadtest.stormreport import render_json, render_table
from actorim.tools.loadtest.stormworker import SETUP_DEADLINE_S, SETUP_TIMEOUT_S, StormSpec
from actorim.tools.loadtest.wire import decode_line, encode_line

__all__ = ["StormAborted", "run_storm", "storm_command"]

STEADY_S = 1.0
"""Publishing before the drain, so that the rooms have a flow to recover from."""
RECOVERY_TIMEOUT_S = 240.0
EXIT_NOT_RECOVERED = 1
"""Exit status when a client did not recover, or a message was lost or duplicated."""
EXIT_ABORTED = 3


class StormAborted(Exception):
    """The storm could not be carried out; the message says why."""


def storm_command(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO) -> int:
    """``actorim bench storm``: raises ValueError for bad flags, returns the exit status."""
    options = options_from(args)
    print(f"actorim bench storm: seed {options.seed}", file=stderr)
    try:
        outcome = run_storm(options, stderr=stderr)
    except StormAborted as exc:
        print(f"actorim bench storm: {exc}", file=stderr)
        return EXIT_ABORTED
    print(render_json(outcome) if options.json else render_table(outcome), file=stdout)
    return 0 if outcome.passed else EXIT_NOT_RECOVERED


# -- the run ----------------------------------------------------------------------------------


class _Workers:
    """The client processes and their JSON-lines pipes (as the load test's runner has them)."""

    def __init__(self, specs: list[StormSpec]) -> None:
        self.inbox: Queue = Queue()
        self.progress: dict[int, dict[str, Any]] = {}
        self.procs: list[Any] = []
        for index, spec in enumerate(specs):
            proc = subprocess.Popen(
                worker_command("actorim.tools.loadtest.stormworker"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=worker_env(),
            )
            self.procs.append(proc)
            gevent.spawn(self._read, index, proc)
            self.send(index, encode_line("spec", spec=spec.to_json()))

    def _read(self, index: int, proc: Any) -> None:
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                self.inbox.put((index, decode_line(line)))
        self.inbox.put((index, None))

    def send(self, index: int, line: bytes) -> None:
        with contextlib.suppress(OSError):
            self.procs[index].stdin.write(line)
            self.procs[index].stdin.flush()

    def broadcast(self, line: bytes) -> None:
        for index in range(len(self.procs)):
            self.send(index, line)

    def poll(self, timeout: float) -> None:
        """Take in what arrived within ``timeout``; progress lines update ``progress``."""
        with contextlib.suppress(Empty):
            self._take(*self.inbox.get(timeout=timeout))

    def gather(self, kind: str, timeout: float) -> list[dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(answers) < len(self.procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StormAborted(f"the client processes did not say {kind!r} in time")
            try:
                index, message = self.inbox.get(timeout=remaining)
            except Empty:
                continue
            if message is not None and message["type"] == kind:
                answers[index] = message
            else:
                self._take(index, message)
        return [answers[i] for i in range(len(self.procs))]

    def _take(self, index: int, message: dict[str, Any] | None) -> None:
        if message is None:
            raise StormAborted(f"client process {index} exited")
        if message["type"] == "progress":
            self.progress[index] = message

    def total(self, key: str) -> int:
        return sum(int(p.get(key, 0)) for p in self.progress.values())

    def stop(self) -> None:
        self.broadcast(encode_line("close"))
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _specs(options: StormOptions, urls: tuple[str, ...], secret: str) -> list[StormSpec]:
    per = -(-options.clients // options.processes)
    specs = []
    for process in range(options.processes):
        first = process * per
        count = max(0, min(per, options.clients - first))
        specs.append(
            StormSpec(
                process=process,
                urls=urls,
                first=first,
                count=count,
                rooms=options.room_count,
                secret=secret,
                user_prefix="storm-",
                room_prefix="storm-",
                connect_rate=options.connect_rate / options.processes,
                seed=options.seed + process,
            )
        )
    return specs


def _node_args(options: StormOptions, api_line: str, drained: bool) -> tuple[str, ...]:
    args = ["--api-keys", api_line, "--api-rate", "100000", "--api-burst", "100000"]
    args += ["--max-connections-per-user", "4"]
    if drained:
        args += ["--drain-seconds", str(options.drain_seconds)]
        args += ["--drain-reconnect-spread", str(options.spread)]
    if options.redis_url:
        args += ["--redis-url", options.redis_url, "--redis-namespace", f"storm{options.seed}"]
    else:
        args += ["--store", "sqlite"]
    return tuple(args)


def run_storm(options: StormOptions, *, stderr: TextIO) -> StormOutcome:
    """Run the scenario the options describe; raises StormAborted when it cannot be done."""
    scratch = Path(tempfile.mkdtemp(prefix="actorim-storm-"))
    secret = secrets.token_urlsafe(32)
    api_key, api_line = new_api_key()
    nodes = [
        NodeProcess(
            chr(ord("A") + n), scratch / f"node{n}", secret, _node_args(options, api_line, n == 0)
        )
        for n in range(options.nodes)
    ]
    workers: _Workers | None = None
    try:
        gevent.joinall([gevent.spawn(node.start) for node in nodes], raise_error=True)
        specs = _specs(options, tuple(node.url for node in nodes), secret)
        workers = _Workers(specs)
        setup_s = SETUP_DEADLINE_S + SETUP_TIMEOUT_S + options.clients / options.connect_rate
        ready = workers.gather("ready", 60 + setup_s)
        joined = sum(int(r["joined"]) for r in ready)
        errors: dict[str, int] = {}
        for answer in ready:
            for kind, count in answer["errors"].items():
                errors[kind] = errors.get(kind, 0) + int(count)
        listed = "".join(f", {kind} {count}" for kind, count in sorted(errors.items()))
        _say(stderr, f"{joined} of {options.clients} clients joined on node A{listed}")
        return _storm(options, nodes, workers, api_key, joined=joined, stderr=stderr)
    except RuntimeError as exc:
        raise StormAborted(str(exc)) from None
    finally:
        if workers is not None:
            workers.stop()
        for node in nodes:
            node.kill()
        if options.keep:
            _say(stderr, f"the nodes' directories and logs are in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _storm(
    options: StormOptions,
    nodes: list[NodeProcess],
    workers: _Workers,
    api_key: str,
    *,
    joined: int,
    stderr: TextIO,
) -> StormOutcome:
    outcome = StormOutcome(options, joined=joined)
    rooms = [f"storm-{n}" for n in range(options.room_count)]
    drained = nodes[0]
    publisher = Publisher(nodes[-1], api_key, rooms, options.rate)
    publisher.start()
    gevent.sleep(STEADY_S)
    cpu_before = {node.name: node.cpu() for node in nodes}
    workers.broadcast(encode_line("drain"))
    workers.gather("draining", 30)  # every close from now on is the storm's
    drain_ns = time.time_ns()
    drained.terminate()
    exited = gevent.spawn(drained.wait, options.grace)
    listen_ns = 0
    if options.nodes == 1:
        outcome.drained_exit = exited.get()
        cpu_old = drained.cpu_at_exit - cpu_before["A"]
        _say(stderr, f"node A {outcome.drained_exit}; starting it again")
        listen_ns = drained.start()
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        workers.poll(0.1)
        if workers.total("recovered") + workers.total("given_up") >= joined:
            break
    cpu_after = {node.name: node.cpu() for node in nodes}
    gevent.sleep(0.5)  # a last stretch of live traffic after the storm
    publisher.stop()
    if options.nodes == 1:
        outcome.server_cpu_s = {"A (draining)": cpu_old, "A (restarted)": cpu_after["A"]}
    else:
        # Its exit is awaited (the clients no longer need it, but a node that does not stop
        # by itself is killed at the end of its grace, as a process manager does: the report
        # says which), and its CPU counted until then.
        outcome.drained_exit = exited.get()
        cpu_old = max(drained.cpu_at_exit, drained.cpu()) - cpu_before["A"]
        outcome.server_cpu_s = {"A (draining)": cpu_old}
        for node in nodes[1:]:
            outcome.server_cpu_s[node.name] = cpu_after[node.name] - cpu_before[node.name]
    workers.broadcast(encode_line("expect", acked=publisher.acked))
    results = workers.gather("result", 60)
    outcome.published = publisher.sent
    outcome.publish_retries = publisher.refused
    _tally(outcome, results, drain_ns, listen_ns)
    return outcome


def _tally(
    outcome: StormOutcome, results: list[dict[str, Any]], drain_ns: int, listen_ns: int
) -> None:
    recovered = sorted(ns for r in results for ns in r["recovered_ns"])
    outcome.recovered = len(recovered)
    for r in results:
        outcome.not_back += int(r["not_back"])
        outcome.missed_while_away += int(r["missed_while_away"])
        outcome.lost += int(r["lost"])
        outcome.duplicated += int(r["duplicated"])
        outcome.clients_losing += int(r["clients_losing"])
        outcome.clients_doubling += int(r["clients_doubling"])
        outcome.attempts += int(r["attempts"])
        for kind, count in r["errors"].items():
            outcome.errors[kind] = outcome.errors.get(kind, 0) + int(count)
    closed = [int(ns) for r in results for ns in r["closed_ns"]]
    if closed:
        outcome.closed_last_s = round((max(closed) - drain_ns) / 1e9, 3)
    hints = [float(h) for r in results for h in r["hints"]]
    if hints:
        outcome.hint_mean_s = round(sum(hints) / len(hints), 3)
    if recovered:
        outcome.all_recovered_s = round((recovered[-1] - drain_ns) / 1e9, 3)
        outcome.recovery_p50_s = round((recovered[len(recovered) // 2] - drain_ns) / 1e9, 3)
        p99 = recovered[min(len(recovered) - 1, int(len(recovered) * 0.99))]
        outcome.recovery_p99_s = round((p99 - drain_ns) / 1e9, 3)
        if listen_ns:
            outcome.from_listen_s = round((recovered[-1] - listen_ns) / 1e9, 3)


def _say(stderr: TextIO, text: str) -> None:
    print(f"actorim bench storm: {text}", file=stderr, flush=True)
