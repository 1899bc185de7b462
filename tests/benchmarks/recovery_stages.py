"""Where a reconnect storm's receiving node spends its CPU, per client that came back.

    recovery_stages.py SPY CLIENTS     py-spy raw stacks of the receiving node (``--gil``,
                                       250 samples a second) as a Markdown table: milliseconds
                                       of CPU per recovered client, per stage

Record them while ``actorim bench storm --nodes 2`` runs (docs/performance.md, "Reconnect
storm"), for instance with

    py-spy record -p PID_OF_NODE_B -r 250 -f raw --nonblocking --gil -o B.spy

The stages are told apart by the frames of each sample, the first rule that matches wins, so
that the work a stage causes deeper down (a room's replay encoding frames) counts for it.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

RATE = 250  # py-spy samples per second

STAGES = [
    ("admission: connections refused (upgrade, close 1013)", ["web/admission.py"]),
    (
        "room: replay after `since` (store read answered, frames queued)",
        ["RoomActor._replay", "RoomActor._replayed", "_gap_for"],
    ),
    (
        "room: member events to the other members (joined / left)",
        ["_membership_changed", "_announce", "_tell_members", "_remote_member_event"],
    ),
    ("room: subscription (member lists, join)", ["RoomActor._join", "RoomActor._leave"]),
    ("room: fan-out of new messages", ["RoomActor._fan_out", "_carry_out"]),
    (
        "connection: connect (token, register, inbox read, rooms subscribed)",
        ["ConnectionActor._connect", "OfflineDelivery", "verify_fresh", "jwt/"],
    ),
    ("connection: close of the old links", ["ConnectionActor._close"]),
    ("router, presence", ["RouterActor", "PresenceActor", "presence.py"]),
    ("Redis: store, broker, pub/sub listener", ["actorim/redis/", "redis/"]),
    ("writes (flush of what was queued)", ["flush", "link.py", "try_write", "_service"]),
    ("reading frames, decoding", ["_readable", "_Reading", "frames.py", "codec.py"]),
    (
        "upgrade, request head, accept",
        ["_run_websocket", "run_application", "read_request", "pywsgi", "baseserver"],
    ),
    ("actor start and runtime", ["start_child", "_actor.py", "_mailbox.py", "pykka/"]),
]
OTHER = "hub loop and the rest (libev, system calls, collector)"


def stage_of(stack: str) -> str:
    for stage, keys in STAGES:
        if any(key in stack for key in keys):
            return stage
    return OTHER


def per_client(path: str, clients: int) -> dict[str, float]:
    """Milliseconds of CPU per client per stage (samples of idle threads are not counted)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        counts[stage_of(stack)] += int(count)
    return {stage: n * 1000 / RATE / clients for stage, n in counts.items()}


def main(argv: list[str]) -> None:
    path, clients = argv[0], int(argv[1])
    table = per_client(path, clients)
    print("| stage | ms per recovered client |")
    print("|---|---|")
    for stage, ms in sorted(table.items(), key=lambda item: -item[1]):
        print(f"| {stage} | {ms:.3f} |")
    print(f"| **total** | **{sum(table.values()):.3f}** |")


if __name__ == "__main__":
    main(sys.argv[1:])
