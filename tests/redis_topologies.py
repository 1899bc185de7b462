"""Private Redis Clusters and Sentinel setups for the tests, made of ``RedisServer`` processes.

- ``RedisClusterSet``: six servers in cluster mode, made a cluster of three masters with a
  replica each by ``redis-cli --cluster create --cluster-replicas 1``, with a short
  ``cluster-node-timeout`` so that a replica takes over within about two seconds of its master
  being killed. Its URL is ``redis+cluster://`` with every node.
- ``SentinelSet``: a master, its replica and one Sentinel with quorum 1 and a short
  ``down-after-milliseconds``. Its URL is ``redis+sentinel://<sentinel>/<master name>``.

Fixtures: ``redis_cluster_session``, a cluster of three masters without replicas shared by the
session, and ``redis_cluster_client``, a client of it, every master wiped (FLUSHALL) before the
test: for the store's conformance suite.

Every data server requires ``PASSWORD`` (the URLs carry it) and runs with the durable settings
of tests/redis_server.py, on free loopback ports, never the machine's own Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from actorim.redis.topology import make_client
from tests.redis_server import RedisServer, TlsFiles, find_redis_server

__all__ = [
    "MASTER_NAME",
    "RedisClusterSet",
    "SentinelSet",
    "redis_cluster_client",
    "redis_cluster_session",
]

# How long a cluster node may be unreachable before its replica takes over (ms).
CLUSTER_NODE_TIMEOUT_MS = 1000
# How long a Sentinel waits before it calls a master down (ms), and may take to fail over.
SENTINEL_DOWN_MS = 1000
SENTINEL_FAILOVER_MS = 3000
MASTER_NAME = "actorim-test"
# The data servers' password (requirepass), with characters a URL must escape.
PASSWORD = "pw:with@odd/chars"
QUOTED = "pw%3Awith%40odd%2Fchars"
# How long a new cluster or a failover may take to settle.
SETTLE_TIMEOUT = 30.0


def _redis_cli() -> str:
    return shutil.which("redis-cli") or str(Path(find_redis_server()).parent / "redis-cli")


def _wait(what: str, check: object, timeout: float = SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisClusterSet:
    """Six redis-server processes made one Redis Cluster; see the module docstring."""

    def __init__(
        self, directory: Path, *, size: int = 6, replicas: int = 1, tls: TlsFiles | None = None
    ) -> None:
        binary = find_redis_server()
        self.replicas = replicas
        self.tls = tls
        args = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(CLUSTER_NODE_TIMEOUT_MS),
            "--cluster-replica-validity-factor",
            "0",  # a replica may always take over, however long since it heard its master
        )
        self.servers = [
            RedisServer(
                directory / f"node-{n}", binary=binary, args=args, password=PASSWORD, tls=tls
            )
            for n in range(size)
        ]

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        if self.tls is None:
            return f"redis+cluster://:{QUOTED}@{nodes}"
        return f"rediss+cluster://:{QUOTED}@{nodes}?ssl_ca_certs={self.tls.cert}"

    def start(self) -> None:
        for server in self.servers:
            server.start()
        nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            [
                _redis_cli(),
                *_cli_tls(self.tls),
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
                "-a",
                PASSWORD,
                "--no-auth-warning",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=SETTLE_TIMEOUT,
        )
        self.wait_settled()

    def wait_settled(self) -> None:
        """Until every running node says the cluster is ok and every replica of a running
        master is in sync with it."""

        def ok() -> bool:
            for server in self.servers:
                if not server.running:
                    continue
                with server.client(retries=False) as client:
                    if client.cluster("info").get("cluster_state") != "ok":
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and (
                        replication["master_link_status"] != "up"
                        or not _master_running(self.servers, int(replication["master_port"]))
                    ):
                        return False
            return True

        _wait("the Redis Cluster to be ok", ok)

    def masters(self) -> list[RedisServer]:
        """The running servers that are masters now."""
        found = []
        for server in self.servers:
            if server.running:
                with server.client(retries=False) as client:
                    if client.info("replication")["role"] == "master":
                        found.append(server)
        return found

    def master_of(self, key: str) -> RedisServer:
        """The server that serves ``key``'s slot now."""
        for server in self.masters():
            with server.client(retries=False) as client:
                slot = int(client.cluster("keyslot", key))
                owner = client.cluster("nodes")
                me = next(n for n, v in owner.items() if "myself" in v["flags"])
                if any(int(a) <= slot <= int(b) for a, b, *_ in _ranges(owner[me]["slots"])):
                    return server
        raise AssertionError(f"no master serves {key!r}")

    def migrate_slot(self, key: str, to: RedisServer) -> None:
        """Move ``key``'s slot, with its keys, to the master ``to``, as ``redis-cli --cluster
        reshard`` does for each slot: IMPORTING and MIGRATING, MIGRATE the keys in batches,
        then SETSLOT NODE on the new owner, the old one and the others."""
        source = self.master_of(key)
        with source.client(retries=False) as src, to.client(retries=False) as dst:
            slot = int(src.cluster("keyslot", key))
            src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
                src.execute_command(
                    "MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "AUTH", PASSWORD, "KEYS", *keys
                )
            for server in [to, source, *(m for m in self.masters() if m not in (to, source))]:
                with server.client(retries=False) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def replica_of(self, master: RedisServer) -> RedisServer:
        for server in self.servers:
            if server.running and server is not master:
                with server.client(retries=False) as client:
                    info = client.info("replication")
                    if info["role"] == "slave" and int(info["master_port"]) == master.port:
                        return server
        raise AssertionError(f"no replica of 127.0.0.1:{master.port}")

    def wait_master(self, server: RedisServer) -> None:
        """Until ``server`` is a master and the cluster is ok again (after a failover)."""

        def promoted() -> bool:
            with server.client(retries=False) as client:
                return bool(client.info("replication")["role"] == "master")

        _wait(f"127.0.0.1:{server.port} to take over", promoted)
        self.wait_settled()

    def stop(self) -> None:
        for server in self.servers:
            server.kill()


def _cli_tls(tls: TlsFiles | None) -> list[str]:
    return [] if tls is None else ["--tls", "--cacert", str(tls.cert)]


def _master_running(servers: list[RedisServer], port: int) -> bool:
    return any(s.port == port and s.running for s in servers)


def _ranges(slots: list[list[str]]) -> list[list[str]]:
    return [r if len(r) > 1 else [r[0], r[0]] for r in slots]


class SentinelSet:
    """A master, a replica and one Sentinel watching them; see the module docstring."""

    def __init__(self, directory: Path, *, tls: TlsFiles | None = None) -> None:
        binary = find_redis_server()
        self.directory = directory
        self.tls = tls
        self.master = RedisServer(directory / "master", binary=binary, password=PASSWORD, tls=tls)
        self.replica = RedisServer(directory / "replica", binary=binary, password=PASSWORD, tls=tls)
        self.sentinel = RedisServer(directory / "sentinel", binary=binary, tls=tls)

    @property
    def url(self) -> str:
        where = f"127.0.0.1:{self.sentinel.port}/{MASTER_NAME}"
        if self.tls is None:
            return f"redis+sentinel://:{QUOTED}@{where}"
        return f"rediss+sentinel://:{QUOTED}@{where}?ssl_ca_certs={self.tls.cert}"

    def start(self) -> None:
        self.master.start()
        self.replica.args = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        config = self.directory / "sentinel" / "sentinel.conf"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {SENTINEL_DOWN_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {SENTINEL_FAILOVER_MS}\n"
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
        )
        self.sentinel.args = ("--sentinel",)
        self.sentinel.config = config
        self.sentinel.start()

        def synced() -> bool:
            with self.replica.client(retries=False) as client:
                return bool(client.info("replication")["master_link_status"] == "up")

        _wait("the replica to sync", synced)

    def current_master_port(self) -> int:
        with self.sentinel.client(retries=False) as client:
            _host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(port)

    def wait_master(self, server: RedisServer) -> None:
        """Until the Sentinel names ``server`` the master (after a failover)."""
        _wait(
            f"the Sentinel to promote 127.0.0.1:{server.port}",
            lambda: self.current_master_port() == server.port,
        )

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.kill()


@pytest.fixture(scope="session")
def redis_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterSet]:
    """Three masters, no replicas, for the whole session."""
    made = RedisClusterSet(tmp_path_factory.mktemp("redis-cluster"), size=3, replicas=0)
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture
def redis_cluster_client(redis_cluster_session: RedisClusterSet) -> Iterator[RedisCluster]:
    """A client of the session's cluster (as a node makes it), every master wiped first."""
    client = make_client(redis_cluster_session.url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()
