"""The flags of ``actorim bench``, checked up front into one `BenchOptions` value.

Every problem a flag can have is found before a process starts or a socket opens, and the
error names the flag. The safety rule lives here too: a URL whose host is not this machine is
refused unless ``--allow-remote`` says the target is meant.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from actorim.tools.loadtest.plan import Layout
from actorim.tools.loadtest.thresholds import Threshold
from actorim.tools.loadtest.wire import BODY_HEADER_BYTES

__all__ = ["BenchOptions", "TokenSource", "add_flags", "is_loopback", "options_from"]

DEFAULT_CLIENTS = 100
DEFAULT_ROOMS = 10
"""Rooms when ``--rooms`` is not given, fewer for few clients so each room has two members."""
DEFAULT_RATE = 100.0
"""Messages per second over all senders when neither ``--rate`` nor ``--max`` is given."""
DEFAULT_WINDOW = 8
DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_SIZE = 64
DEFAULT_CONNECT_RATE = 200.0
"""Dials per second over all processes: a thousand clients connect in five seconds."""
DEFAULT_PREFIX = "bench-"

MAX_DURATION_S = 3600.0
"""A run measures for an hour at most: a load test, not a soak, and never an unbounded one."""
MAX_WARMUP_S = 600.0
"""Warm-up and ramp are bounded likewise (ten minutes each)."""
MAX_WINDOW = 1000
"""Sends one ``--max`` sender keeps in flight at most."""
MAX_SIZE = 60_000
"""Largest body: the frame around it stays under the server's default 64 KiB frame limit."""

SERVER_DEFAULT_RATE = 100.0
"""Commands per second a connection may send under the server's default ``rate`` setting."""

_NAME = re.compile(r"[A-Za-z0-9_.:@-]*")
_MAX_NAME = 128


class TokenSource:
    """Where clients get their tokens: minted from a secret, read from a file, or ``/dev/token``."""

    SECRET = "secret"
    FILE = "file"
    DEV = "dev"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    url: str
    layout: Layout
    rate: float | None
    """Messages per second over all senders; None in ``--max`` mode."""
    window: int
    duration_s: float
    warmup_s: float
    ramp_s: float
    size: int
    token_source: str
    secret: str
    tokens: tuple[str, ...]
    """Line i of the token file is the token of client i (``--token-file`` only)."""
    user_prefix: str
    room_prefix: str
    connect_rate: float
    thresholds: tuple[Threshold, ...]
    json: bool

    def warnings(self) -> list[str]:
        """Settings that will work but probably not as meant."""
        notes = []
        layout = self.layout
        if layout.senders and self.rate is not None:
            per_sender = self.rate / layout.senders
            if per_sender > SERVER_DEFAULT_RATE:
                notes.append(
                    f"each sender sends {per_sender:g} messages/s, above the "
                    f"{SERVER_DEFAULT_RATE:g} commands/s a connection may send by default: "
                    "expect rate_limited errors, or use more --senders"
                )
        if min(layout.members(r) for r in range(layout.rooms)) < 2:
            notes.append("some rooms have a single member: their messages reach nobody")
        if layout.senders == 0:
            notes.append("--senders 0: nothing will be sent")
        if self.ramp_s > self.warmup_s:
            notes.append("--ramp is longer than --warmup: the ramp is part of the measurement")
        return notes


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the server's WebSocket URL, e.g. ws://127.0.0.1:8080/ws")
    load = parser.add_argument_group("load")
    load.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="connections to open")
    load.add_argument(
        "--processes",
        type=int,
        default=None,
        help="processes sharing the clients (default: the CPU count)",
    )
    load.add_argument(
        "--rooms",
        type=int,
        default=None,
        help=f"rooms the clients spread over (default {DEFAULT_ROOMS}, at most clients/2)",
    )
    load.add_argument(
        "--senders",
        default="all",
        help="how many clients send: a number, a percentage (10%%) or 'all' (default)",
    )
    pace = load.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=float,
        default=None,
        help=f"messages per second over all senders, evenly spaced (default {DEFAULT_RATE:g})",
    )
    pace.add_argument(
        "--max", action="store_true", help="send as fast as the server allows instead"
    )
    load.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help=f"sends each sender keeps in flight with --max (default {DEFAULT_WINDOW})",
    )
    load.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds measured")
    load.add_argument(
        "--warmup",
        type=float,
        default=DEFAULT_WARMUP_S,
        help="seconds of sending before the measurement starts",
    )
    load.add_argument(
        "--ramp", type=float, default=0.0, help="seconds over which the load grows from zero"
    )
    load.add_argument("--size", type=int, default=DEFAULT_SIZE, help="message body in bytes")
    load.add_argument(
        "--connect-rate",
        type=float,
        default=DEFAULT_CONNECT_RATE,
        help=f"new connections per second (default {DEFAULT_CONNECT_RATE:g})",
    )
    auth = parser.add_argument_group("tokens (one of)")
    auth.add_argument("--secret", help="mint tokens with this HS256 secret [env ACTORIM_SECRET]")
    auth.add_argument("--token-file", help="a file whose line i is the token of client i")
    auth.add_argument("--dev", action="store_true", help="ask the server's /dev/token for tokens")
    auth.add_argument(
        "--user-prefix", default=DEFAULT_PREFIX, help="minted users are PREFIX0, PREFIX1, ..."
    )
    auth.add_argument(
        "--room-prefix", default=DEFAULT_PREFIX, help="rooms are PREFIX0, PREFIX1, ..."
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the result as one JSON object")
    out.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="EXPR",
        help="fail (exit status 1) unless EXPR holds, e.g. p99_ms<200 (repeatable)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a server that is not on this machine",
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine without asking DNS (localhost, 127/8, ::1)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _check_url(url: str, allow_remote: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"URL {url!r}: expected ws://HOST:PORT/ws or wss://HOST/ws")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"URL {url!r}: the port is not a number") from None
    if not allow_remote and not is_loopback(parts.hostname):
        raise ValueError(
            f"{parts.hostname} is not this machine: load-testing another server needs "
            "--allow-remote (check the URL first: the load is real)"
        )


def _senders(text: str, clients: int) -> int:
    text = text.strip().lower()
    if text == "all":
        return clients
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 <= share <= 100:
                raise ValueError
            return round(clients * share / 100)
        senders = int(text)
    except ValueError:
        raise ValueError(
            f"--senders {text!r}: expected a number, a percentage (10%) or 'all'"
        ) from None
    if not 0 <= senders <= clients:
        raise ValueError(f"--senders must be 0 to --clients ({clients}), got {senders}")
    return senders


def _check_prefix(flag: str, prefix: str, count: int) -> None:
    if _NAME.fullmatch(prefix) is None or len(prefix) + len(str(count)) > _MAX_NAME:
        raise ValueError(
            f"{flag} {prefix!r}: names are 1 to {_MAX_NAME} characters of A-Z a-z 0-9 _ . : @ -"
        )


def _tokens(
    args: argparse.Namespace, env: Mapping[str, str], clients: int
) -> tuple[str, str, tuple[str, ...]]:
    chosen = [
        flag
        for flag, given in (
            ("--secret", args.secret),
            ("--token-file", args.token_file),
            ("--dev", args.dev),
        )
        if given
    ]
    if len(chosen) > 1:
        raise ValueError(f"choose one way to get tokens, not {' and '.join(chosen)}")
    if args.token_file:
        try:
            lines = Path(args.token_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--token-file {args.token_file}: cannot read it ({exc})") from None
        tokens = tuple(line.strip() for line in lines if line.strip())
        if len(tokens) < clients:
            raise ValueError(
                f"--token-file {args.token_file} holds {len(tokens)} tokens for {clients} clients"
            )
        return TokenSource.FILE, "", tokens[:clients]
    if args.dev:
        return TokenSource.DEV, "", ()
    secret = args.secret or env.get("ACTORIM_SECRET", "")
    if not secret:
        raise ValueError(
            "clients need tokens: give --secret (or set ACTORIM_SECRET), --token-file, "
            "or --dev for a server in development mode"
        )
    return TokenSource.SECRET, secret, ()


def _check_range(flag: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{flag} must be {low:g} to {high:g}, got {value:g}")


def options_from(args: argparse.Namespace, env: Mapping[str, str]) -> BenchOptions:
    """Raises ValueError naming the flag at fault."""
    _check_url(args.url, args.allow_remote)
    clients = args.clients
    if clients < 1:
        raise ValueError(f"--clients must be 1 or more, got {clients}")
    processes = args.processes if args.processes is not None else (os.cpu_count() or 1)
    if processes < 1:
        raise ValueError(f"--processes must be 1 or more, got {processes}")
    rooms = args.rooms if args.rooms is not None else max(1, min(DEFAULT_ROOMS, clients // 2))
    if not 1 <= rooms <= clients:
        raise ValueError(f"--rooms must be 1 to --clients ({clients}), got {rooms}")
    layout = Layout(clients, min(processes, clients), rooms, _senders(args.senders, clients))
    rate = None if args.max else (DEFAULT_RATE if args.rate is None else args.rate)
    if rate is not None and not rate > 0:
        raise ValueError(f"--rate must be above 0, got {rate:g}")
    _check_range("--window", args.window, 1, MAX_WINDOW)
    _check_range("--duration", args.duration, 0.1, MAX_DURATION_S)
    _check_range("--warmup", args.warmup, 0, MAX_WARMUP_S)
    _check_range("--ramp", args.ramp, 0, MAX_WARMUP_S)
    _check_range("--size", args.size, BODY_HEADER_BYTES, MAX_SIZE)
    if not args.connect_rate > 0:
        raise ValueError(f"--connect-rate must be above 0, got {args.connect_rate:g}")
    _check_prefix("--user-prefix", args.user_prefix, clients)
    _check_prefix("--room-prefix", args.room_prefix, rooms)
    source, secret, tokens = _tokens(args, env, clients)
    return BenchOptions(
        url=args.url,
        layout=layout,
        rate=rate,
        window=args.window,
        duration_s=args.duration,
        warmup_s=args.warmup,
        ramp_s=args.ramp,
        size=args.size,
        token_source=source,
        secret=secret,
        tokens=tokens,
        user_prefix=args.user_prefix,
        room_prefix=args.room_prefix,
        connect_rate=args.connect_rate,
        thresholds=tuple(Threshold.parse(text) for text in args.threshold),
        json=args.json,
    )
