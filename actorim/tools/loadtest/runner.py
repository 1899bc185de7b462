"""Runs a load test: starts the worker processes, steps them through the phases, merges results.

Workers are fresh interpreters (``python -m actorim.tools.loadtest.worker``), not forks: a fork of a
process running gevent would carry its greenlets along, a server's among them when the bench
runs next to one. They talk JSON lines over pipes (see `actorim.tools.loadtest.wire`); the secret
travels there too, never on a command line. Every phase has a deadline, so a run always ends.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any, TextIO

import gevent
from gevent import subprocess
from gevent.queue import Empty, Queue

from actorim.tools.loadtest.options import BenchOptions
from actorim.tools.loadtest.pipes import worker_command, worker_env
from actorim.tools.loadtest.plan import CONNECT_TIMEOUT_S, DRAIN_TIMEOUT_S, NS, REPLY_TIMEOUT_S
from actorim.tools.loadtest.progress import Counters, Progress
from actorim.tools.loadtest.stats import Tally, summarize
from actorim.tools.loadtest.thresholds import ThresholdResult
from actorim.tools.loadtest.wire import WorkerSpec, decode_line, encode_line

__all__ = ["BenchAborted", "Outcome", "run_bench"]

SPAWN_TIMEOUT_S = 30.0
"""Time a worker has to start its interpreter and import its modules, on a busy machine."""

START_LEAD_S = 0.3
"""The start time is set this far ahead, so every worker has it before the first send is due."""

MARGIN_S = 10.0
"""Slack on every phase deadline for a machine loaded by the test itself."""

EXIT_TIMEOUT_S = 5.0
"""Time a worker has to close its clients and exit before it is killed."""

POLL_S = 0.1
"""How often the runner redraws the progress bar while it waits for workers."""

_STDERR_KEPT = 4096
"""Bytes of a worker's standard error kept to explain its failure."""


class BenchAborted(Exception):
    """The run could not be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class Outcome:
    options: BenchOptions
    tally: Tally
    metrics: dict[str, float | int | None]
    thresholds: tuple[ThresholdResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.thresholds)


class _Worker:
    def __init__(self, index: int, process: Any) -> None:
        self.index = index
        self.process = process
        self.counters = Counters()
        self.stderr = b""

    def send(self, line: bytes) -> None:
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
        except OSError:
            pass  # the worker died: its reader reports it

    def read_stdout(self, inbox: Queue) -> None:
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                inbox.put((self, decode_line(line)))
        inbox.put((self, None))

    def read_stderr(self) -> None:
        for chunk in self.process.stderr:
            self.stderr = (self.stderr + chunk)[-_STDERR_KEPT:]


def _spec(options: BenchOptions, process: int, run_id: int) -> WorkerSpec:
    layout = options.layout
    clients = layout.clients_of(process)
    return WorkerSpec(
        process=process,
        url=options.url,
        layout=layout,
        rate=options.rate,
        window=options.window,
        ramp_s=options.ramp_s,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        size=options.size,
        run_id=run_id,
        token_source=options.token_source,
        secret=options.secret,
        tokens=tuple(options.tokens[i] for i in clients) if options.tokens else (),
        user_prefix=options.user_prefix,
        room_prefix=options.room_prefix,
        connect_rate=options.connect_rate / layout.processes,
    )


def _spawn(index: int) -> _Worker:
    process = subprocess.Popen(
        worker_command("actorim.tools.loadtest.worker"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=worker_env(),
    )
    return _Worker(index, process)


class _Run:
    def __init__(self, options: BenchOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.inbox: Queue = Queue()
        self.workers: list[_Worker] = []
        self.t0_ns = 0

    def start(self) -> None:
        run_id = random.getrandbits(32)
        for index in range(self.options.layout.processes):
            worker = _spawn(index)
            self.workers.append(worker)
            gevent.spawn(worker.read_stdout, self.inbox)
            gevent.spawn(worker.read_stderr)
            spec = _spec(self.options, index, run_id)
            worker.send(encode_line("spec", spec=spec.to_json()))

    def gather(self, kind: str, timeout_s: float, phase: str) -> list[dict[str, Any]]:
        """Wait for one ``kind`` line from every worker; raise BenchAborted past the deadline."""
        answers: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(self.workers):
            self._show(phase)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = len(self.workers) - len(answers)
                raise BenchAborted(f"{waiting} worker process(es) did not finish {phase} in time")
            try:
                worker, message = self.inbox.get(timeout=min(POLL_S, remaining))
            except Empty:
                continue
            if message is None:
                raise BenchAborted(self._died(worker))
            if message["type"] == "progress":
                worker.counters = Counters(**{k: int(message[k]) for k in _COUNTER_NAMES})
            elif message["type"] == kind:
                answers[worker.index] = message
        return [answers[i] for i in range(len(self.workers))]

    def _died(self, worker: _Worker) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=1)
        text = worker.stderr.decode("utf-8", "replace").strip()
        detail = f":\n{text}" if text else ""
        return f"worker process {worker.index} exited ({worker.process.returncode}){detail}"

    def _show(self, phase: str) -> None:
        counters = Counters.total([w.counters for w in self.workers])
        options = self.options
        if phase == "connecting":
            fraction = counters.connected / options.layout.clients
        elif phase in ("warmup", "running"):
            elapsed = (time.time_ns() - self.t0_ns) / NS
            fraction = elapsed / (options.warmup_s + options.duration_s)
            if elapsed < 0:
                phase = "starting"
            else:
                phase = "warmup" if elapsed < options.warmup_s else "running"
        else:
            fraction = 1.0
        self.progress.update(counters, phase=phase, fraction=fraction, now=time.monotonic())

    def stop(self) -> None:
        for worker in self.workers:
            worker.send(encode_line("close"))
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def kill(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


_COUNTER_NAMES = ("connected", "sent", "acked", "received", "errors")


def run_bench(options: BenchOptions, *, stderr: TextIO) -> Outcome:
    """Run the load test the options describe; raises BenchAborted when it cannot be done."""
    progress = Progress(stderr, tty=stderr.isatty(), clients=options.layout.clients)
    run = _Run(options, progress)
    finished = False
    try:
        run.start()
        per_process = -(-options.layout.clients // options.layout.processes)
        connect_s = per_process * options.layout.processes / options.connect_rate
        ready = run.gather("ready", SPAWN_TIMEOUT_S + connect_s + CONNECT_TIMEOUT_S, "connecting")
        if not sum(int(r["joined"]) for r in ready):
            raise BenchAborted(_nobody_joined(ready, options))
        run.t0_ns = time.time_ns() + round(START_LEAD_S * NS)
        for worker in run.workers:
            worker.send(encode_line("start", t0_ns=run.t0_ns))
        window_s = START_LEAD_S + options.warmup_s + options.duration_s
        sent: list[dict[str, Any]] = run.gather(
            "sent", window_s + REPLY_TIMEOUT_S + MARGIN_S, "running"
        )
        room_acked = [
            sum(column) for column in zip(*(s["acked_by_room"] for s in sent), strict=True)
        ]
        for worker in run.workers:
            worker.send(encode_line("expect", acked_by_room=room_acked))
        results = run.gather("result", DRAIN_TIMEOUT_S + MARGIN_S, "draining")
        progress.close()
        run.stop()
        finished = True
    finally:
        progress.close()
        if not finished:
            run.kill()
    tally = Tally.total(Tally.from_json(r["tally"]) for r in results)
    busiest = max(float(s["cpu_busy"]) for s in sent)
    metrics = summarize(tally, options.duration_s, worker_cpu=busiest)
    checks = tuple(threshold.check(metrics) for threshold in options.thresholds)
    return Outcome(options, tally, metrics, checks)


def _nobody_joined(ready: list[dict[str, Any]], options: BenchOptions) -> str:
    errors: dict[str, int] = {}
    for answer in ready:
        for kind, count in answer["errors"].items():
            errors[kind] = errors.get(kind, 0) + int(count)
    listed = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items())) or "none"
    hint = ""
    if "token:404" in errors:
        hint = " (/dev/token answers 404: the server is not in development mode)"
    elif "unauthenticated" in errors:
        hint = " (the server refused the tokens: check the secret or the token file)"
    elif "dial" in errors or "handshake" in errors:
        hint = f" (is a server listening at {options.url}?)"
    return f"no client could connect and join; errors: {listed}{hint}"
