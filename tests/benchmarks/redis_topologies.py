"""One Redis against a three-master Redis Cluster, through the Redis store: sends/s and latency.

Starts private servers (never the machine's own Redis): one durable redis-server, and a Redis
Cluster of three masters with a replica each (tests/redis_topologies.py). On each, several
greenlet writers append one-message batches into their own rooms (as the store actor commits a
send), and a single writer measures the latency of one send with ``redis_min_replicas`` 0 and 1
(WAIT for one replica), alternating rounds so that the noise of a shared machine falls on both.

    .venv/bin/python tests/benchmarks/redis_topologies.py [--seconds 3] [--writers 8]

Prints sends/s per topology and p50/p99 send latency per durability; docs/deploy.md quotes it.
Each shard of a cluster is a single-threaded redis-server: on a machine of 2 cores shared by
six servers and the writers, the cluster cannot show its scaling, only its overhead.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from actorim.domain.messages import room_conv  # noqa: E402
from actorim.redis.store import RedisStore  # noqa: E402
from actorim.redis.topology import make_client  # noqa: E402
from actorim.store.base import NewMessage  # noqa: E402
from tests.redis_server import RedisServer, find_redis_server  # noqa: E402
from tests.redis_topologies import RedisClusterSet  # noqa: E402


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


def _pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
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
    finally:
        single.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
