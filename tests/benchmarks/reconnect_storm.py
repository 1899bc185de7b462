"""The reconnect storm at a small size, as a smoke check of ``actorim bench storm``.

Two runs: two nodes on a private ``redis-server`` (tests/redis_server.py starts it), whose node
A drains and whose clients move to node B; and one SQLite node, restarted in place. Each prints
the storm's table; the script exits 1 if either lost or doubled a message or left a client
unrecovered. docs/performance.md ("Reconnect storm") has the figures at 10,000 clients and the
command lines that made them.

    .venv/bin/python tests/benchmarks/reconnect_storm.py [--clients 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.redis_server import RedisServer, find_redis_server


def storm(clients: int, *flags: str) -> int:
    command = [sys.executable, "-m", "actorim", "bench", "storm", "--clients", str(clients)]
    command += ["--spread", "2", "--drain-seconds", "0.5", *flags]
    print(f"$ actorim bench storm {' '.join(command[5:])}", flush=True)
    return subprocess.run(command, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="actorim-storm-redis-") as directory:
        redis = RedisServer(Path(directory), binary=find_redis_server())
        redis.start()
        try:
            url = f"redis://127.0.0.1:{redis.port}/0"
            cluster = storm(args.clients, "--nodes", "2", "--redis-url", url)
        finally:
            redis.stop()
    print()
    single = storm(args.clients)
    return 1 if cluster or single else 0


if __name__ == "__main__":
    sys.exit(main())
