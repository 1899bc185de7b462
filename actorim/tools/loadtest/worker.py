"""One load-test process: its share of the clients on gevent, driven by the runner.

Run as ``python -m actorim.tools.loadtest.worker``; it reads a `WorkerSpec` line on standard input
and then plays four phases, each ended by a line to the runner on standard output:

1. connect: dial its clients at its share of ``--connect-rate``, ``connect`` and ``join``
   each one, then say ``ready``;
2. send: from the start time the runner gives (``start``), send on schedule until the end of
   the window, await the replies, then say ``sent`` with the acknowledged sends per room;
3. drain: given every process's acknowledged sends (``expect``), wait until each client got
   every message of its room but its own, or `DRAIN_TIMEOUT_S`, then say ``result`` (its tally);
4. close its clients and exit when the runner says ``close``.

Losing standard input at any point (the runner died or gave up) ends the process at once.
"""

from __future__ import annotations

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import contextlib
import http.client
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import gevent
import msgpack
from gevent.event import AsyncResult
from gevent.lock import BoundedSemaphore, Semaphore

from actorim.domain.auth import TokenAuthority
from actorim.tools.loadtest.options import TokenSource
from actorim.tools.loadtest.pipes import expect, raise_file_limit, worker_pipes
from actorim.tools.loadtest.plan import (
    CONNECT_TIMEOUT_S,
    DRAIN_TIMEOUT_S,
    NS,
    REPLY_TIMEOUT_S,
    Schedule,
    Window,
    ramp_start_ns,
)
from actorim.tools.loadtest.stats import Tally, expected_deliveries, lost_deliveries
from actorim.tools.loadtest.throttle import Throttle
from actorim.tools.loadtest.wire import WorkerSpec, encode_line, make_body, read_body
from actorim.tools.loadtest.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    HandshakeError,
    ServerFrames,
    WebSocketProtocolError,
    close_code,
    incoming,
    masked_frame,
    open_websocket,
)

__all__ = ["main"]

DRAIN_POLL_S = 0.05
PROGRESS_INTERVAL_S = 0.5
"""How often the runner hears the counters, which feed its progress bar."""

MAX_IN_FLIGHT = 1000
"""Sends a ``--rate`` sender may have awaiting replies; past it the sender waits (and its
latency, measured from the due time, shows the wait)."""


THROTTLING_CODES = frozenset({"rate_limited", "overloaded"})
"""Refusals that slow a ``--max`` sender down; ``rate_limited`` ones are not errors there."""


class Client:
    """One connection: its socket, the replies it awaits and what it counted."""

    __slots__ = (
        "acked",
        "alive",
        "close_reason",
        "frames",
        "ids",
        "index",
        "joined",
        "pending",
        "reader",
        "received",
        "room",
        "room_name",
        "sender",
        "slots",
        "sock",
        "throttle",
        "waiters",
        "write_lock",
    )

    def __init__(self, index: int, room: int, room_name: str) -> None:
        self.index = index
        self.room = room
        self.room_name = room_name
        self.sock: Any = None
        self.frames = ServerFrames()
        self.ids = itertools.count(1)
        self.write_lock = Semaphore()
        self.waiters: dict[int, AsyncResult] = {}
        self.pending: dict[int, tuple[int, bool, float]] = {}
        """Sends awaiting a reply, by id: due time, measured or not, monotonic send time."""
        self.alive = False
        self.close_reason = ""
        self.joined = False
        self.acked = 0
        self.received = 0
        self.slots = BoundedSemaphore(1)
        self.throttle = Throttle()
        self.reader: gevent.Greenlet | None = None
        self.sender: gevent.Greenlet | None = None

    def write(self, frame: bytes) -> None:
        with self.write_lock:
            self.sock.sendall(frame)

    def close(self) -> None:
        self.alive = False
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.write(masked_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            with contextlib.suppress(OSError):
                self.sock.close()


class Worker:
    def __init__(self, spec: WorkerSpec, emit: Callable[[bytes], None]) -> None:
        self.spec = spec
        self.emit = emit
        self.layout = spec.layout
        self.window = Window.of_seconds(spec.warmup_s, spec.duration_s)
        self.tally = Tally()
        self.clients = [
            Client(i, self.layout.room_of(i), f"{spec.room_prefix}{self.layout.room_of(i)}")
            for i in self.layout.clients_of(spec.process)
        ]
        self.tally.clients = len(self.clients)
        self.acked_by_room = [0] * self.layout.rooms
        self.live = {"connected": 0, "sent": 0, "acked": 0, "received": 0}
        self.stopping = False
        self.t0_ns = 0
        self.mono_t0 = 0.0
        self.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self.authority = TokenAuthority(spec.secret) if spec.secret else None

    # -- progress --------------------------------------------------------------------------

    def report_progress(self) -> None:
        while True:
            gevent.sleep(PROGRESS_INTERVAL_S)
            self.progress()

    def progress(self) -> None:
        """Tell the runner the counters; also sent before each phase ends, so its view is exact."""
        self.emit(encode_line("progress", errors=sum(self.tally.errors.values()), **self.live))

    # -- phase 1: connect ------------------------------------------------------------------

    def connect_all(self) -> None:
        started = time.monotonic()
        greenlets = []
        for k, client in enumerate(self.clients):
            delay = started + k / self.spec.connect_rate - time.monotonic()
            gevent.sleep(max(0.0, delay))
            greenlets.append(gevent.spawn(self._connect, client, k))
        gevent.joinall(greenlets)
        self.progress()
        self.emit(
            encode_line(
                "ready",
                connected=self.tally.connected,
                joined=self.tally.joined,
                errors=self.tally.errors,
            )
        )

    def _connect(self, client: Client, k: int) -> None:
        self.tally.operations += 1
        try:
            with gevent.Timeout(CONNECT_TIMEOUT_S, TimeoutError):
                self._open(client, k)
        except TimeoutError:
            self.tally.error("timeout")
        except HandshakeError:
            self.tally.error("handshake")
        except OSError:
            self.tally.error("dial")
        finally:
            if not client.joined:
                client.close()

    def _open(self, client: Client, k: int) -> None:
        token = self._token(client, k)
        if token is None:
            return
        client.sock, rest = open_websocket(self.spec.url, timeout=CONNECT_TIMEOUT_S)
        client.sock.settimeout(None)
        client.alive = True
        client.reader = gevent.spawn(self._read, client, rest)
        if not self._request(client, "connect", token=token):
            return
        self.tally.connected += 1
        self.live["connected"] += 1
        self.tally.operations += 1
        if self._request(client, "join", room=client.room_name):
            client.joined = True
            self.tally.joined += 1

    def _token(self, client: Client, k: int) -> str | None:
        spec = self.spec
        if spec.token_source == TokenSource.FILE:
            return spec.tokens[k]
        user = f"{spec.user_prefix}{client.index}"
        if spec.token_source == TokenSource.DEV:
            return self._dev_token(user)
        assert self.authority is not None
        return self.authority.mint(user)

    def _dev_token(self, user: str) -> str | None:
        parts = urlsplit(self.spec.url)
        secure = parts.scheme == "wss"
        connection_class = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        connection = connection_class(parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT_S)
        try:
            connection.request("GET", f"/dev/token?user={quote(user)}")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            self.tally.error(f"token:{response.status}")
            return None
        return str(json.loads(body)["token"])

    def _request(self, client: Client, t: str, **args: Any) -> bool:
        command_id = next(client.ids)
        waiter = AsyncResult()
        client.waiters[command_id] = waiter
        client.write(masked_frame(OP_BINARY, self.packer.pack({"t": t, "id": command_id, **args})))
        reply = waiter.get()
        if reply is None:
            self.tally.error(client.close_reason)
            return False
        if not reply.get("ok"):
            self.tally.error(str(reply.get("error", {}).get("code", "error")))
            return False
        return True

    # -- reading, for the whole run --------------------------------------------------------

    def _read(self, client: Client, rest: bytes) -> None:
        unpack = msgpack.unpackb
        try:
            for opcode, payload in incoming(client.sock, client.frames, rest):
                if opcode == OP_BINARY:
                    self._on_frame(client, unpack(payload, raw=False, strict_map_key=False))
                elif opcode == OP_PING:
                    client.write(masked_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    self._closed(client, f"closed:{close_code(payload)}")
                    return
            self._closed(client, "closed:1006")
        except (WebSocketProtocolError, ValueError, TypeError):
            self._closed(client, "protocol")
        except OSError:
            self._closed(client, "closed:1006")

    def _closed(self, client: Client, why: str) -> None:
        was_alive, client.alive = client.alive, False
        client.close_reason = why
        for waiter in client.waiters.values():
            waiter.set(None)
        client.waiters.clear()
        # Before the join a failure is counted once, by the command it cut short.
        if was_alive and client.joined and not self.stopping:
            self.tally.error(why)
        if client.sender is not None and client.sender is not gevent.getcurrent():
            client.sender.kill(block=False)
        with contextlib.suppress(OSError):
            client.sock.close()

    def _on_frame(self, client: Client, frame: Any) -> None:
        if type(frame) is not dict:
            return
        kind = frame.get("t")
        if kind == "msg":
            due_ns = read_body(frame.get("body"), self.spec.run_id)
            if due_ns is None:
                return
            self.live["received"] += 1
            if self.window.measured(due_ns - self.t0_ns):
                client.received += 1
                self.tally.received += 1
                self.tally.latency.record((time.time_ns() - due_ns) // 1000)
        elif kind == "reply":
            command_id = frame.get("id")
            if not isinstance(command_id, int):
                return  # not an answer to a command of this client's: it sends only int ids
            sent = client.pending.pop(command_id, None)
            if sent is not None:
                self._on_send_reply(client, sent, frame)
                return
            waiter = client.waiters.pop(command_id, None)
            if waiter is not None:
                waiter.set(frame)

    def _on_send_reply(self, client: Client, sent: tuple[int, bool, float], frame: Any) -> None:
        due_ns, measured, sent_at = sent
        client.slots.release()
        if frame.get("ok"):
            self.live["acked"] += 1
            client.throttle.accepted()
            if measured:
                client.acked += 1
                self.acked_by_room[client.room] += 1
                self.tally.acked += 1
                self.tally.ack_latency.record((time.time_ns() - due_ns) // 1000)
            return
        code = str(frame.get("error", {}).get("code", "error"))
        closed_loop = self.spec.rate is None
        if closed_loop and code in THROTTLING_CODES:
            client.throttle.refused(sent_at=sent_at, now=time.monotonic())
        if measured:
            if closed_loop and code == "rate_limited":
                self.tally.throttled += 1
            else:
                self.tally.error(code)

    # -- phase 2: send ---------------------------------------------------------------------

    def run(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns
        self.mono_t0 = time.monotonic() + (t0_ns - time.time_ns()) / NS
        senders = [c for c in self.clients if c.joined and self.layout.is_sender(c.index)]
        for client in senders:
            open_loop = self.spec.rate is not None
            client.slots = BoundedSemaphore(MAX_IN_FLIGHT if open_loop else self.spec.window)
            loop = self._send_on_schedule if open_loop else self._send_flat_out
            client.sender = gevent.spawn(loop, client)
        self._sleep_until(0)
        cpu_at_start = time.process_time()
        self._sleep_until(self.window.end_ns)
        cpu_busy = (time.process_time() - cpu_at_start) / (self.window.end_ns / NS)
        gevent.joinall([c.sender for c in senders if c.sender is not None])
        self._await_replies()
        self.progress()
        self.emit(encode_line("sent", acked_by_room=self.acked_by_room, cpu_busy=cpu_busy))

    def _offset_ns(self) -> int:
        return round((time.monotonic() - self.mono_t0) * NS)

    def _sleep_until(self, offset_ns: int) -> None:
        gevent.sleep(max(0.0, self.mono_t0 + offset_ns / NS - time.monotonic()))

    def _until_end_s(self) -> float:
        return max(0.0, self.mono_t0 + self.window.end_ns / NS - time.monotonic())

    def _send_on_schedule(self, client: Client) -> None:
        assert self.spec.rate is not None
        schedule = Schedule(self.spec.rate, self.spec.ramp_s)
        senders, end_ns = self.layout.senders, self.window.end_ns
        for n in itertools.count(client.index, senders):
            offset_ns = schedule.offset_ns(n)
            if offset_ns >= end_ns:
                return
            self._sleep_until(offset_ns)
            if not client.slots.acquire(timeout=self._until_end_s()):
                return
            if not client.alive:
                return
            self._send(client, self.t0_ns + offset_ns, self.window.measured(offset_ns))

    def _send_flat_out(self, client: Client) -> None:
        self._sleep_until(ramp_start_ns(self.spec.ramp_s, client.index, self.layout.senders))
        last_send = float("-inf")
        while client.alive:
            if not client.slots.acquire(timeout=self._until_end_s()):
                return
            gap = client.throttle.next_send_at(last_send) - time.monotonic()
            if gap > 0:
                gevent.sleep(min(gap, self._until_end_s()))
            offset_ns = self._offset_ns()
            if offset_ns >= self.window.end_ns or not client.alive:
                client.slots.release()
                return
            last_send = time.monotonic()
            self._send(client, self.t0_ns + offset_ns, self.window.measured(offset_ns))

    def _send(self, client: Client, due_ns: int, measured: bool) -> None:
        command_id = next(client.ids)
        client.pending[command_id] = (due_ns, measured, time.monotonic())
        if measured:
            self.tally.sent += 1
            self.tally.operations += 1
        self.live["sent"] += 1
        body = make_body(due_ns, self.spec.run_id, size=self.spec.size)
        command = {"t": "send", "id": command_id, "room": client.room_name, "body": body}
        try:
            client.write(masked_frame(OP_BINARY, self.packer.pack(command)))
        except OSError:
            return  # the reader sees the connection end and counts it

    def _await_replies(self) -> None:
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while time.monotonic() < deadline and any(c.pending for c in self.clients if c.alive):
            gevent.sleep(DRAIN_POLL_S)
        for client in self.clients:
            unanswered = sum(1 for _, measured, _ in client.pending.values() if measured)
            if unanswered:
                self.tally.error("no_reply", unanswered)
            client.pending.clear()

    # -- phase 3: drain --------------------------------------------------------------------

    def drain(self, room_acked: list[int]) -> None:
        members = [c for c in self.clients if c.joined]

        def expected(client: Client) -> int:
            return expected_deliveries(room_acked[client.room], client.acked)

        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and any(
            c.received < expected(c) for c in members if c.alive
        ):
            gevent.sleep(DRAIN_POLL_S)
        for client in members:
            self.tally.expected += expected(client)
            self.tally.lost += lost_deliveries(expected(client), client.received)
        self.progress()
        self.emit(encode_line("result", tally=self.tally.to_json()))

    def close_all(self) -> None:
        self.stopping = True
        for client in self.clients:
            client.close()


def main() -> None:
    emit, commands = worker_pipes()
    spec = WorkerSpec.from_json(expect(commands, "spec")["spec"])
    raise_file_limit(len(spec.layout.clients_of(spec.process)))
    worker = Worker(spec, emit)
    gevent.spawn(worker.report_progress)
    worker.connect_all()
    worker.run(int(expect(commands, "start")["t0_ns"]))
    worker.drain([int(n) for n in expect(commands, "expect")["acked_by_room"]])
    expect(commands, "close")
    worker.close_all()
    os._exit(0)


if __name__ == "__main__":
    main()
