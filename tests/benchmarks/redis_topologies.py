"""One Redis against a three-master Redis Cluster: fan-out through two nodes, and the store.

Starts private servers (never the machine's own Redis): one durable redis-server, and a Redis
Cluster of three masters with a replica each (tests/redis_topologies.py).

- Fan-out: two ``actorim serve`` nodes, A and B, on each topology; ``--rooms`` rooms, each with
  ``--members`` members split between the nodes and a sender on A that keeps ``--window``
  sends in flight. Prints deliveries/s (messages received by all members, per second of the
  run) and the p50/p99 time from send to delivery.
- The store alone: ``--writers`` greenlets appending one-message batches (as the store actor
  commits a send) on each topology, and the latency of one send on the cluster with
  ``redis_min_replicas`` 0 and 1 (WAIT for one replica), in alternating rounds so that the
  noise of a shared machine falls on both.
- ``--failover``: a writer appends with ``redis_min_replicas`` 0 (then 1) while the master of
  its room is killed with SIGKILL; prints how many acknowledged messages the promoted replica
  lacks.

    .venv/bin/python tests/benchmarks/redis_topologies.py [--messages 300] [--failover]

docs/deploy.md quotes it. Each shard of a cluster is a single-threaded redis-server: on a
machine of 2 cores shared by six servers, two nodes and the clients, the cluster cannot show
its scaling, only its overhead.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from actorim.domain.messages import room_conv  # noqa: E402
from actorim.redis.keys import ClusterKeys  # noqa: E402
from actorim.redis.store import RedisStore  # noqa: E402
from actorim.redis.topology import make_client  # noqa: E402
from actorim.store.base import NewMessage  # noqa: E402
from tests.redis_server import RedisServer, find_redis_server  # noqa: E402
from tests.redis_topologies import RedisClusterSet  # noqa: E402
from tests.support import Client  # noqa: E402
from tests.test_cluster import NodeProcess, start_nodes  # noqa: E402

NODE_ARGS = ("--rate", "100000", "--burst", "100000", "--log-level", "WARNING")


def fan_out(url: str, directory: Path, options: argparse.Namespace) -> tuple[float, list[float]]:
    """Deliveries/s and the send-to-delivery latencies through nodes A and B on ``url``."""
    nodes = [NodeProcess(name, url, directory, args=NODE_ARGS) for name in "AB"]
    start_nodes(nodes)
    latencies: list[float] = []
    try:
        members: list[Client] = []
        senders: list[tuple[Client, str]] = []
        for r in range(options.rooms):
            room = f"fan-{r}"
            for m in range(options.members):
                client, _ = nodes[m % 2].client(f"m{r}-{m}")
                client.ok("join", room=room)
                members.append(client)
            sender, _ = nodes[0].client(f"s{r}")
            sender.ok("join", room=room)
            senders.append((sender, room))
        expected = options.messages * options.members
        done = gevent.event.Event()
        received = [0]

        def read(client: Client) -> None:
            count = 0
            while count < options.messages:
                frame = client._read(30.0)
                if frame.get("t") == "msg" and frame.get("body", "").startswith("t="):
                    latencies.append(time.time() - float(frame["body"][2:]))
                    count += 1
            received[0] += count
            if received[0] == expected * options.rooms:
                done.set()

        def send(client: Client, room: str) -> None:
            for first in range(0, options.messages, options.window):
                ids = []
                for _ in range(first, min(options.messages, first + options.window)):
                    command_id = next(client.ids)
                    ids.append(command_id)
                    body = f"t={time.time()!r}"
                    client.send_obj({"t": "send", "id": command_id, "room": room, "body": body})
                for command_id in ids:
                    assert client.reply_to(command_id, timeout=30.0)["ok"]

        readers = [gevent.spawn(read, c) for c in members]
        began = time.monotonic()
        gevent.joinall([gevent.spawn(send, c, room) for c, room in senders], raise_error=True)
        done.wait(timeout=60.0)
        elapsed = time.monotonic() - began
        gevent.killall(readers)
        return received[0] / elapsed, latencies
    finally:
        for node in nodes:
            node.kill()


def _message(room: str, n: int) -> NewMessage:
    return NewMessage(
        room_conv(room), "bench", "text", b"x" * 100, int(time.time() * 1000), cid=f"{n}", room=room
    )


def throughput(url: str, seconds: float, writers: int) -> float:
    """Sends/s of ``writers`` greenlets, each appending into rooms of its own."""
    store = RedisStore(make_client(url), namespace="bench")
    counts = [0] * writers
    deadline = time.monotonic() + seconds

    def write(w: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            store.append_batch([_message(f"w{w}-r{n % 16}", n)])
            n += 1
        counts[w] = n

    started = time.monotonic()
    gevent.joinall([gevent.spawn(write, w) for w in range(writers)], raise_error=True)
    return sum(counts) / (time.monotonic() - started)


def latencies(url: str, replicas: int, count: int, offset: int) -> list[float]:
    store = RedisStore(make_client(url), namespace="bench", min_replicas=replicas)
    found = []
    for n in range(count):
        began = time.perf_counter()
        store.append_batch([_message("latency", offset + n)])
        found.append(time.perf_counter() - began)
    return found


def failover_loss(cluster: RedisClusterSet, replicas: int) -> str:
    """Kill the master of a room mid-stream; how many acknowledged appends are gone after."""
    room = f"failover-{replicas}"
    store = RedisStore(make_client(cluster.url), namespace="bench", min_replicas=replicas)
    master = cluster.master_of(ClusterKeys("bench").room_channel(room))
    heir = cluster.replica_of(master)
    acked: set[int] = set()
    refused = 0
    n = 0
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and len(acked) < 2000:
        if len(acked) == 1000 and master.running:
            master.kill()
        try:
            stored = store.append_batch([_message(room, n)])
            acked.add(stored[0].seq)
            n += 1
        except Exception:
            refused += 1
            if not master.running and len(acked) >= 1000:
                break  # the shard is failing over: stop and count
    cluster.wait_master(heir)
    master.start()
    cluster.wait_settled()
    fresh = RedisStore(make_client(cluster.url), namespace="bench")
    kept = {m.seq for m in fresh.since(room_conv(room), 0, limit=10_000)[0]}
    lost = len(acked - kept)
    return (
        f"failover, redis_min_replicas={replicas}: {len(acked)} acknowledged,"
        f" {lost} lost after the replica took over ({refused} refused)"
    )


def _pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--failover", action="store_true")
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-topologies-"))
    single = RedisServer(directory / "single", binary=find_redis_server())
    cluster = RedisClusterSet(directory / "cluster")
    single.start()
    cluster.start()
    try:
        urls = {
            "one Redis": f"redis://127.0.0.1:{single.port}/0",
            "cluster (3 masters)": cluster.url,
        }
        for name, url in urls.items():
            rate, lat = fan_out(url, directory / name.split()[0], options)
            print(
                f"{name:22} {rate:8.0f} deliveries/s fan-out through 2 nodes"
                f" ({options.rooms} rooms x {options.members} members),"
                f" p50 {_pct(lat, 0.5):.1f} ms p99 {_pct(lat, 0.99):.1f} ms"
            )
        for name, url in urls.items():
            rate = throughput(url, options.seconds, options.writers)
            print(f"{name:22} {rate:8.0f} sends/s ({options.writers} writers, 1-message batches)")
        by_replicas: dict[int, list[float]] = {0: [], 1: []}
        for r in range(options.rounds):
            for replicas in (0, 1):
                by_replicas[replicas] += latencies(cluster.url, replicas, 250, r * 1000)
        for replicas, values in by_replicas.items():
            print(
                f"cluster send latency, redis_min_replicas={replicas}:"
                f" p50 {_pct(values, 0.5):.2f} ms p99 {_pct(values, 0.99):.2f} ms"
                f" mean {statistics.mean(values) * 1000:.2f} ms"
            )
        if options.failover:
            for replicas in (0, 1):
                print(failover_loss(cluster, replicas))
    finally:
        single.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
