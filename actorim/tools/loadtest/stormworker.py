"""One reconnect-storm process: its share of the clients on gevent, driven by the storm runner.

Run as ``python -m actorim.tools.loadtest.stormworker``; it reads a `StormSpec` line on standard
input, then:

1. connects its clients to the first node at its share of the connect rate, each with a token
   of its own user, and joins each to its room; says ``ready``;
2. records every message of the room; told ``drain`` (it answers ``draining``), it treats
   closes as the storm's (a close before it is an error and leaves that client out); when the
   node closes a connection with 1012 and a hint
   (``reconnect in <ms> ms``), the client waits the hint plus its own jitter, reconnects (to
   the next node in the list, as a load balancer would send it; to the same one when there is
   one node) and resumes with ``connect``'s ``since``; a refused attempt is tried again on a
   capped back-off, after the hint of a node that sent it away (1013, too busy to set it
   up). A client is *recovered* when it has every message up to the room's seq that the new
   connection's ``connect`` reply names; one closed again after that ``connect`` comes back
   again, and is recovered once it has caught up again. Progress lines say how many are;
3. given the publisher's acknowledged seqs of every room (``expect``), waits until each
   recovered client holds them (or `SETTLE_TIMEOUT_S`), then says ``result``: per client and
   room, the messages lost (missing at a recovered client) and duplicated, the clients not
   back and what they missed while away, the recovery times, the attempts and the hints;
4. closes its clients and exits when told ``close`` (or when standard input ends).
"""

from __future__ import annotations

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import contextlib
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gevent
import msgpack
from gevent.event import AsyncResult, Event

from actorim.domain.auth import TokenAuthority
from actorim.protocol.restart import TRY_AGAIN_LATER_CODE, restart_delay
from actorim.tools.loadtest.pipes import expect, raise_file_limit, worker_pipes
from actorim.tools.loadtest.recovery import SeqLog, reconnect_delay
from actorim.tools.loadtest.wire import encode_line
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

__all__ = ["StormSpec", "main"]

CONNECT_TIMEOUT_S = 10.0
"""One reconnect attempt (dial, handshake, ``connect``) on a machine loaded by the storm."""

SETUP_TIMEOUT_S = 30.0
"""One first connection (dial, handshake, ``connect``, ``join``): the setup is not measured,
and a client that gives up on a busy node makes it busier (its work is wasted, its retry
queues again), so it waits longer."""

SETUP_DEADLINE_S = 300.0
"""A client still not joined this long after its first attempt is left out of the storm."""

RECONNECT_DEADLINE_S = 180.0
"""A client that has not recovered this long after its close gives up (counted, not hung)."""

SETTLE_TIMEOUT_S = 15.0
"""Time the clients have to receive the last acknowledged messages after the runner's word."""

PROGRESS_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class StormSpec:
    """Everything one storm process needs: its clients are ``first`` to ``first + count - 1``."""

    process: int
    urls: tuple[str, ...]
    first: int
    count: int
    rooms: int
    secret: str
    user_prefix: str
    room_prefix: str
    connect_rate: float
    seed: int

    def room_of(self, client: int) -> int:
        return client % self.rooms

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StormSpec:
        return cls(**{**data, "urls": tuple(data["urls"])})


class StormClient:
    """One user's connection, its room's `SeqLog`, and what its reconnection cost."""

    __slots__ = (
        "attempts",
        "closed_ns",
        "done",
        "frames",
        "hint",
        "ids",
        "index",
        "log",
        "recovered_ns",
        "room",
        "sent_away",
        "sock",
        "target",
        "waiters",
    )

    def __init__(self, index: int, room: str) -> None:
        self.index = index
        self.room = room
        self.sock: Any = None
        self.frames = ServerFrames()
        self.ids = itertools.count(1)
        self.waiters: dict[int, AsyncResult] = {}
        self.log: SeqLog | None = None
        self.closed_ns = 0
        self.recovered_ns = 0
        self.target = 0
        """The seq the client must reach to count as recovered (the reconnect's inbox seq)."""
        self.hint: float | None = None
        self.sent_away: float | None = None
        """The hint of the close that ended the last attempt (1013 from a busy node), if any."""
        self.attempts = 0
        self.done = Event()

    @property
    def recovered(self) -> bool:
        return self.recovered_ns > 0


class StormWorker:
    def __init__(self, spec: StormSpec, emit: Callable[[bytes], None]) -> None:
        self.spec = spec
        self.emit = emit
        self.rand = random.Random(spec.seed)
        self.authority = TokenAuthority(spec.secret)
        self.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self.clients = [
            StormClient(i, f"{spec.room_prefix}{spec.room_of(i)}")
            for i in range(spec.first, spec.first + spec.count)
        ]
        self.errors: dict[str, int] = {}
        self.stopping = False
        self.draining = False
        """The runner said it drains node A now: a close before that is not the storm's."""

    # -- counting ------------------------------------------------------------------------------

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def report_progress(self) -> None:
        while True:
            gevent.sleep(PROGRESS_INTERVAL_S)
            self.progress()

    def progress(self) -> None:
        clients = self.clients
        self.emit(
            encode_line(
                "progress",
                joined=sum(c.log is not None for c in clients),
                closed=sum(c.closed_ns > 0 for c in clients),
                recovered=sum(c.recovered for c in clients),
                given_up=sum(c.done.is_set() and not c.recovered for c in clients),
            )
        )

    # -- the first connection ------------------------------------------------------------------

    def connect_all(self) -> None:
        started = time.monotonic()
        greenlets = []
        for k, client in enumerate(self.clients):
            gevent.sleep(max(0.0, started + k / self.spec.connect_rate - time.monotonic()))
            greenlets.append(gevent.spawn(self._first_connect, client))
        gevent.joinall(greenlets)
        self.progress()
        joined = sum(c.log is not None for c in self.clients)
        self.emit(encode_line("ready", joined=joined, errors=self.errors))

    def _first_connect(self, client: StormClient) -> None:
        """Connect and join, trying again after a refusal until `SETUP_DEADLINE_S`: the setup
        is not what is measured, and a node busy with thousands of connections at once may
        time some out."""
        deadline = time.monotonic() + SETUP_DEADLINE_S
        for attempt in itertools.count():
            try:
                with gevent.Timeout(SETUP_TIMEOUT_S, TimeoutError):
                    self._open(client, self.spec.urls[0])
                    joined = self._request(client, "join", room=client.room)
                client.log = SeqLog(int(joined["seq"]))
                return
            except Exception as exc:
                self.error(f"first:{_kind(exc, client)}")
                self._drop(client)
            if time.monotonic() > deadline:
                return
            wait = reconnect_delay(attempt + 1, hint=None, rand=self.rand.uniform) * 5
            gevent.sleep(wait + (client.sent_away or 0.0))

    def _open(self, client: StormClient, url: str) -> dict[str, Any]:
        """Dial ``url`` and ``connect``, resuming the room from the last seq seen."""
        client.sent_away = None
        client.sock, rest = open_websocket(url, timeout=CONNECT_TIMEOUT_S)
        client.sock.settimeout(None)
        client.frames = ServerFrames()
        gevent.spawn(self._read, client, client.sock, rest)
        args: dict[str, Any] = {
            "token": self.authority.mint(f"{self.spec.user_prefix}{client.index}")
        }
        if client.log is not None:
            args["since"] = {client.room: client.log.caught_up}
        return self._request(client, "connect", **args)

    def _request(self, client: StormClient, t: str, **args: Any) -> dict[str, Any]:
        command_id = next(client.ids)
        waiter = AsyncResult()
        client.waiters[command_id] = waiter
        client.sock.sendall(
            masked_frame(OP_BINARY, self.packer.pack({"t": t, "id": command_id, **args}))
        )
        reply = waiter.get()
        if reply is None:
            raise ConnectionError(f"closed during {t}")
        if not reply.get("ok"):
            raise _Refused(str((reply.get("error") or {}).get("code", "error")))
        data = reply.get("data")
        return data if isinstance(data, dict) else {}

    # -- reading -------------------------------------------------------------------------------

    def _read(self, client: StormClient, sock: Any, rest: bytes) -> None:
        unpack = msgpack.unpackb
        code, reason = 1006, ""
        try:
            for opcode, payload in incoming(sock, client.frames, rest):
                if opcode == OP_BINARY:
                    self._on_frame(client, unpack(payload, raw=False, strict_map_key=False))
                elif opcode == OP_PING:
                    sock.sendall(masked_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    code, reason = close_code(payload), payload[2:].decode("utf-8", "replace")
                    with contextlib.suppress(OSError):
                        sock.sendall(masked_frame(OP_CLOSE, payload[:2]))
                    return
        except (WebSocketProtocolError, ValueError, TypeError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            if sock is client.sock:
                self._ended(client, code, reason)

    def _on_frame(self, client: StormClient, frame: Any) -> None:
        if type(frame) is not dict:
            return
        kind = frame.get("t")
        if kind == "msg":
            log, seq = client.log, frame.get("seq")
            if log is not None and frame.get("room") == client.room and type(seq) is int:
                log.arrived(seq)
                if client.closed_ns and not client.recovered and client.target:
                    self._check_recovered(client)
        elif kind == "reply":
            waiter = client.waiters.pop(frame.get("id"), None)  # type: ignore[arg-type]
            if waiter is not None:
                waiter.set(frame)
        elif kind == "gap" and frame.get("room") == client.room:
            after, seq = frame.get("after"), frame.get("seq")
            if type(after) is int and type(seq) is int:
                gevent.spawn(self._fill_gap, client, client.sock, after, seq)

    def _fill_gap(self, client: StormClient, sock: Any, after: int, seq: int) -> None:
        """Page the seqs of a ``gap`` event from history, as the Python and browser clients do
        (docs/protocol.md): what the server announced as a gap is not lost. A connection that
        ends meanwhile leaves the rest to the resume of the next one."""
        self.error("gap_paged")
        log = client.log
        while sock is client.sock and log is not None:
            try:
                page = self._request(
                    client, "history", room=client.room, after=after, before=seq + 1, limit=100
                )
            except Exception:
                return
            seqs = [m["seq"] for m in page.get("messages") or () if type(m.get("seq")) is int]
            for paged in seqs:
                log.paged(paged)
            if client.closed_ns and not client.recovered and client.target:
                self._check_recovered(client)
            if not page.get("more") or not seqs:
                return
            after = max(seqs)

    def _check_recovered(self, client: StormClient) -> None:
        assert client.log is not None
        if client.log.caught_up >= client.target:
            client.recovered_ns = time.time_ns()
            client.done.set()

    # -- the storm -----------------------------------------------------------------------------

    def _ended(self, client: StormClient, code: int, reason: str) -> None:
        if code == TRY_AGAIN_LATER_CODE:
            client.sent_away = restart_delay(code, reason)
        for waiter in client.waiters.values():
            waiter.set(None)
        client.waiters.clear()
        if self.stopping or client.log is None:
            return  # the first connection failed: its attempt counts it
        if not self.draining:
            # Lost before the drain (node A overwhelmed by the setup): out of the storm,
            # counted as an error, and the run fails for want of that client.
            self.error(f"closed_before_drain:{code}")
            client.log = None
            return
        if client.closed_ns:
            if client.target:
                # Connected to the new node, then closed: sent away (1013, a node too busy to
                # subscribe its rooms) or cut off. It comes back again, as a real client does,
                # and counts as recovered only once it has caught up after that: a client left
                # away would miss what is published meanwhile, which is no loss of the server's.
                kind = "sent_away" if client.sent_away is not None else "closed"
                self.error(f"{kind}_after_connect:{code}")
                client.target = 0
                client.recovered_ns = 0
                client.done.clear()
                client.hint = restart_delay(code, reason)
                gevent.spawn(self._come_back, client)
            return  # else a reconnect attempt failed: it counts that itself
        client.closed_ns = time.time_ns()
        if code != 1012:
            self.error(f"closed:{code}")
        client.hint = restart_delay(code, reason)
        gevent.spawn(self._come_back, client)

    def _come_back(self, client: StormClient) -> None:
        """Wait the hint plus jitter, then reconnect until it works or the deadline passes."""
        spec = self.spec
        urls = spec.urls
        url = urls[0] if len(urls) == 1 else urls[1 + client.index % (len(urls) - 1)]
        deadline = time.monotonic() + RECONNECT_DEADLINE_S
        for attempt in itertools.count():
            hint = client.hint if attempt == 0 else client.sent_away
            gevent.sleep(reconnect_delay(attempt, hint=hint, rand=self.rand.uniform))
            if time.monotonic() > deadline or self.stopping:
                self.error("gave_up")
                client.done.set()
                return
            client.attempts += 1
            try:
                with gevent.Timeout(CONNECT_TIMEOUT_S, TimeoutError):
                    reply = self._open(client, url)
            except Exception as exc:
                self.error(f"attempt:{_kind(exc, client)}")
                self._drop(client)
                continue
            target: int | None = None
            for entry in reply.get("conversations") or ():
                if isinstance(entry, dict) and entry.get("room") == client.room:
                    target = int(entry.get("seq") or 0)
            if target is None:
                # Connected without its room: nothing resumes it, and what it misses from now
                # on shows as lost at the end.
                self.error("connected_without_room")
            client.target = max(target or 0, 1)
            self._check_recovered(client)
            return

    def _drop(self, client: StormClient) -> None:
        sock, client.sock = client.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- the end -------------------------------------------------------------------------------

    def settle(self, acked: dict[str, list[int]], *, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Wait until every client that is back holds its room's acknowledged seqs, then count.

        A seq missing at a client that recovered (back on a node, caught up since) is *lost*:
        the server acknowledged it and did not deliver it. One missing at a client that is not
        back is not: nothing could reach it, and it would resume from its last seq when it
        came back. Those are counted apart (*missed while away*), beside the clients not back.
        """
        deadline = time.monotonic() + timeout
        joined = [c for c in self.clients if c.log is not None]
        back = [c for c in joined if c.recovered]

        def behind(client: StormClient) -> bool:
            seqs = acked.get(client.room) or [0]
            assert client.log is not None
            return client.log.caught_up < seqs[-1]

        while time.monotonic() < deadline and any(behind(c) for c in back):
            gevent.sleep(0.05)
        lost = duplicated = clients_losing = clients_doubling = missed = not_back = 0
        for client in joined:
            assert client.log is not None
            client_lost, client_dup = client.log.count(acked.get(client.room, ()))
            if client.recovered:
                lost += client_lost
                clients_losing += client_lost > 0
            else:
                not_back += 1
                missed += client_lost
            duplicated += client_dup
            clients_doubling += client_dup > 0
        self.progress()
        self.emit(
            encode_line(
                "result",
                joined=len(joined),
                not_back=not_back,
                missed_while_away=missed,
                lost=lost,
                duplicated=duplicated,
                clients_losing=clients_losing,
                clients_doubling=clients_doubling,
                closed_ns=[c.closed_ns for c in joined if c.closed_ns],
                recovered_ns=[c.recovered_ns for c in joined if c.recovered_ns],
                attempts=sum(c.attempts for c in joined),
                hints=[c.hint for c in joined if c.hint is not None],
                errors=self.errors,
            )
        )

    def close_all(self) -> None:
        self.stopping = True
        for client in self.clients:
            self._drop(client)


class _Refused(Exception):
    """The server answered a command with an error; the message is its code."""


def _kind(exc: BaseException, client: StormClient) -> str:
    if client.sent_away is not None:
        return "try_again_later"
    if isinstance(exc, _Refused):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, HandshakeError):
        return "handshake"
    if isinstance(exc, OSError):
        return "dial"
    return type(exc).__name__


def main() -> None:
    emit, commands = worker_pipes()
    spec = StormSpec.from_json(expect(commands, "spec")["spec"])
    raise_file_limit(spec.count)
    worker = StormWorker(spec, emit)
    gevent.spawn(worker.report_progress)
    worker.connect_all()
    expect(commands, "drain")
    worker.draining = True
    emit(encode_line("draining"))
    acked = expect(commands, "expect")["acked"]
    worker.settle({str(room): [int(s) for s in seqs] for room, seqs in acked.items()})
    expect(commands, "close")
    worker.close_all()
    os._exit(0)


if __name__ == "__main__":
    main()
