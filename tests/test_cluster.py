"""Cluster mode end to end: nodes as separate processes sharing a private Redis.

Every node here is ``python -m actorim serve`` in its own process, with ``REDIS_URL`` pointing at
a redis-server the test started with the recommended persistence (``appendonly yes``,
``appendfsync always``), a fixed secret and short cluster timeouts. The nodes that nothing kills
are started once for the module; a test that kills a node or Redis gets its own. To cut one node
off while the others keep working, a test gives that node a Redis user of its own and changes
that user's ACL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import pytest

from actorim.cli import EXIT_CANNOT_LISTEN
from actorim.domain.auth import TokenAuthority
from actorim.redis.keys import ClusterKeys
from actorim.redis.nodes import list_sessions
from actorim.tools.publisher import Publisher
from tests.redis_server import RedisServer, find_redis_server
from tests.support import (
    BIND_TRIES,
    OPCODE_PING,
    Client,
    RawWebSocket,
    free_port,
    handshake_status,
    http_get,
    queued,
    read_port_file,
    wait_until,
)

pytestmark = pytest.mark.process  # nodes, redis-server and nginx run as processes

SECRET = "cluster-test-secret-0123456789abcdef0123"
TOKENS = TokenAuthority(SECRET)

# Short cluster timeouts, so that a dead node is reaped and a grace ends within a test's time.
NODE_TIMEOUT = 3.0
PRESENCE_GRACE = 0.5
REDIS_HEARTBEAT = 0.5
# What a node is given beyond node_timeout to announce a dead node's users: one reaper sweep
# (node_timeout / 5) and the delivery of the events.
REAP_SLACK = 1.5
# How long a node process may take to start and report ready.
START_TIMEOUT = 20.0
# How long the cluster may take to notice Redis is back and count its link healthy again.
RECOVERY_TIMEOUT = 15.0
# A Redis outage long enough for the listener's reconnect back-off to grow past its floor.
OUTAGE_S = 1.0
# A Redis outage longer than 3 node timeouts at --node-timeout 1: whatever a node keeps in Redis
# with a TTL of that order has lapsed when Redis comes back.
LONG_OUTAGE_S = 3.5

NGINX = shutil.which("nginx") or (
    "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
)
NGINX_TEMPLATE = Path(__file__).resolve().parent.parent / "docs" / "nginx.conf"


# -- nodes as processes -------------------------------------------------------------------------


def node_environment(
    redis_url: str | None, namespace: str, *, secret: str | None = SECRET
) -> dict[str, str]:
    """This test's settings only: nothing of the caller's ACTORIM_* environment leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTORIM_") and k not in ("REDIS_URL", "PORT", "WEB_CONCURRENCY")
    }
    if secret is not None:
        env["ACTORIM_SECRET"] = secret
    env["ACTORIM_REDIS_NAMESPACE"] = namespace
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


class NodeProcess:
    """``actorim serve`` as a child process of the test, in cluster mode."""

    def __init__(
        self,
        name: str,
        redis_url: str | None,
        log_dir: Path,
        *,
        namespace: str = "actorim",
        args: tuple[str, ...] = (),
        secret: str | None = SECRET,
    ) -> None:
        self.name = name
        self.secret = secret
        self.redis_url = redis_url
        self.namespace = namespace
        self.args = args
        # One node listens on port 0 and writes the port it got to port_file. Workers share one
        # port, which must be chosen beforehand: taken meanwhile, another is tried (wait_ready).
        self.picks_port = "--workers" in args
        self.port = free_port() if self.picks_port else 0
        self.log = log_dir / f"{name}.log"
        self.port_file = log_dir / f"{name}.port"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "actorim",
            "serve",
            "--port",
            str(self.port),
            "--port-file",
            str(self.port_file),
            "--node-id",
            self.name,
            "--node-timeout",
            str(NODE_TIMEOUT),
            "--presence-grace",
            str(PRESENCE_GRACE),
            "--redis-heartbeat",
            str(REDIS_HEARTBEAT),
            "--drain-seconds",
            "0.2",
            *self.args,
        ]

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=node_environment(self.redis_url, self.namespace, secret=self.secret),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: workers die with it
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        if self.port == 0:
            try:
                self.port = read_port_file(self.port_file, self.proc)
            except AssertionError as exc:
                raise AssertionError(f"node {self.name}: {exc}\n{self.log_tail()}") from None
        deadline = time.monotonic() + timeout
        tries = 1
        while self.ready_status() != 200:
            exited = self.proc.poll()
            if exited == EXIT_CANNOT_LISTEN and self.picks_port and tries < BIND_TRIES:
                tries += 1  # another process took the port between the pick and the bind
                self.port = free_port()
                self.spawn()
                continue
            if exited is not None or time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} did not become ready:\n{self.log_tail()}")
            gevent.sleep(0.02)

    def ready_status(self) -> int | None:
        try:
            return http_get(f"{self.http}/readyz", timeout=1.0)[0]
        except OSError:
            return None

    def breaker_state(self) -> int:
        """The Redis link's breaker as /metrics reports it: 0 closed, 1 half-open, 2 open."""
        _status, _headers, body = http_get(f"{self.http}/metrics")
        found = re.search(rb'^actorim_circuit_breaker_state\{link="redis"\} (\S+)$', body, re.M)
        assert found is not None, "no Redis breaker in /metrics"
        return int(float(found.group(1)))

    def open_connections(self) -> int:
        """The node's WebSocket connections in any phase, as /metrics reports them."""
        _status, _headers, body = http_get(f"{self.http}/metrics")
        found = re.findall(rb"^actorim_connections\{phase=\"[^\"]*\"\} (\S+)$", body, re.M)
        return sum(int(float(count)) for count in found)

    def client(self, user: str) -> tuple[Client, dict[str, Any]]:
        """A client of this node connected as ``user``, and connect's reply."""
        client = Client(self.url)
        return client, client.connect(TOKENS.mint(user))

    def kill(self) -> None:
        """SIGKILL to the node and whatever it started (--workers), as a crash would."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_nodes(nodes: list[NodeProcess]) -> None:
    """Start the processes side by side, then wait until every one is ready."""
    for node in nodes:
        node.spawn()
    for node in nodes:
        node.wait_ready()


def redis_url_of(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


@dataclass
class Cluster:
    redis: RedisServer
    redis_url: str
    nodes: dict[str, NodeProcess]

    def __getitem__(self, name: str) -> NodeProcess:
        return self.nodes[name]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Redis and three nodes, A, B and C, for the tests that kill nothing (distinct users)."""
    directory = tmp_path_factory.mktemp("cluster")
    redis_server = RedisServer(directory / "redis", binary=find_redis_server())
    redis_server.start()
    url = redis_url_of(redis_server)
    nodes = {name: NodeProcess(name, url, directory) for name in "ABC"}
    try:
        start_nodes(list(nodes.values()))
        yield Cluster(redis_server, url, nodes)
    finally:
        for node in nodes.values():
            node.kill()
        redis_server.stop()


class Spawner:
    """Nodes of one test's own, killed after it: ``spawn(redis_url, "P", "Q", ...)`` starts
    them side by side; ``spawn.node(...)`` prepares one for ``spawn.start(...)``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[NodeProcess] = []

    def __call__(self, redis_url: str, *names: str, **options: Any) -> list[NodeProcess]:
        nodes = [self.node(name, redis_url, **options) for name in names]
        self.start(*nodes)
        return nodes

    def node(self, name: str, redis_url: str | None, **options: Any) -> NodeProcess:
        return NodeProcess(name, redis_url, self.directory, **options)

    def start(self, *nodes: NodeProcess) -> None:
        self.started.extend(nodes)
        start_nodes(list(nodes))

    def kill_all(self) -> None:
        for node in self.started:
            node.kill()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.kill_all()


def connect(clients: list[Client], node: NodeProcess, user: str) -> Client:
    client, _reply = node.client(user)
    clients.append(client)
    return client


# -- traffic ------------------------------------------------------------------------------------


def send_many(client: Client, room: str, count: int, prefix: str) -> list[tuple[str, int]]:
    """Pipeline ``count`` sends into ``room``; their (mid, seq) in the order they were sent."""
    ids = []
    for n in range(count):
        command_id = next(client.ids)
        ids.append(command_id)
        client.send_obj(
            {
                "t": "send",
                "id": command_id,
                "room": room,
                "body": f"{prefix}{n}",
                "cid": f"{prefix}{n}",
            }
        )
    acked = []
    for command_id in ids:
        reply = client.reply_to(command_id)
        assert reply["ok"], reply
        acked.append((reply["data"]["mid"], reply["data"]["seq"]))
    return acked


def receive_msgs(client: Client, count: int, **match: Any) -> list[dict[str, Any]]:
    """The next ``count`` msg events (matching ``match``), in the order they arrived."""
    return [client.event("msg", **match) for _ in range(count)]


def history(client: Client, room: str) -> list[dict[str, Any]]:
    """Every stored message of ``room``, oldest first."""
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.ok("history", room=room, after=after, limit=100)
        messages.extend(page["messages"])
        if not page["more"]:
            return messages
        after = page["messages"][-1]["seq"]


# -- rooms and direct messages across nodes -------------------------------------------------------


def test_room_members_on_three_nodes_see_every_message_once_in_the_same_seq_order(
    cluster: Cluster, clients: list[Client]
) -> None:
    room = "t1-room"
    alice = connect(clients, cluster["A"], "t1-alice")
    bob = connect(clients, cluster["B"], "t1-bob")
    carol = connect(clients, cluster["C"], "t1-carol")
    alice_on_b = connect(clients, cluster["B"], "t1-alice")

    assert alice.ok("join", room=room)["members"] == ["t1-alice"]
    assert sorted(bob.ok("join", room=room)["members"]) == ["t1-alice", "t1-bob"]
    assert sorted(carol.ok("join", room=room)["members"]) == ["t1-alice", "t1-bob", "t1-carol"]
    # Alice's second connection, on another node, is no new member.
    assert sorted(alice_on_b.ok("join", room=room)["members"]) == [
        "t1-alice",
        "t1-bob",
        "t1-carol",
    ]
    assert alice.event("member", user="t1-bob")["state"] == "joined"
    assert alice.event("member", user="t1-carol")["state"] == "joined"
    assert bob.event("member", user="t1-carol")["state"] == "joined"

    senders = {"A": alice, "B": bob, "C": carol}
    jobs = {
        name: gevent.spawn(send_many, client, room, 20, f"{name}-")
        for name, client in senders.items()
    }
    gevent.joinall(list(jobs.values()), raise_error=True)
    acked = {name: job.value for name, job in jobs.items()}
    everything = {mid: seq for sent in acked.values() for mid, seq in sent}
    assert sorted(everything.values()) == list(range(1, 61))

    for name, client in [*senders.items(), ("alice on B", alice_on_b)]:
        own = {mid for mid, _seq in acked.get(name, [])}
        expected = {mid: seq for mid, seq in everything.items() if mid not in own}
        got = receive_msgs(client, len(expected), room=room)
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(expected.values()), f"{name} saw {seqs}"
        assert {m["mid"]: m["seq"] for m in got} == expected

    # Alice's connection on B closing keeps her in the room (her connection on A is in it).
    alice_on_b.close()
    carol.ok("send", room=room, body="after alice closed B", cid="marker")
    bob.event("msg", cid="marker")
    assert queued(bob, "member") == []
    assert sorted(bob.ok("join", room=room)["members"]) == ["t1-alice", "t1-bob", "t1-carol"]

    # Her leave ends her membership: announced, once, on every other node.
    alice.ok("leave", room=room)
    assert bob.event("member", user="t1-alice")["state"] == "left"
    assert carol.event("member", user="t1-alice")["state"] == "left"
    carol.ok("send", room=room, body="after alice left", cid="marker-2")
    bob.event("msg", cid="marker-2")
    assert queued(bob, "member") == []
    assert sorted(carol.ok("join", room=room)["members"]) == ["t1-bob", "t1-carol"]


def test_direct_messages_reach_every_connection_of_both_users_on_any_node_but_the_sending_one(
    cluster: Cluster, clients: list[Client]
) -> None:
    dana_a = connect(clients, cluster["A"], "t1-dana")
    dana_b = connect(clients, cluster["B"], "t1-dana")
    eve_b = connect(clients, cluster["B"], "t1-eve")
    eve_c = connect(clients, cluster["C"], "t1-eve")

    sent = eve_b.ok("send", to="t1-dana", body="hi dana", cid="dm-1")
    for client in (dana_a, dana_b, eve_c):
        got = client.event("msg", mid=sent["mid"])
        assert (got["from"], got["to"], got["body"]) == ("t1-eve", "t1-dana", "hi dana")

    answer = dana_a.ok("send", to="t1-eve", body="hi eve", cid="dm-2")
    for client in (eve_b, eve_c, dana_b):
        assert client.event("msg", mid=answer["mid"])["body"] == "hi eve"
    # Both messages travel the same channels in order: had the sending connections been sent
    # their own messages, those would be queued before the answer.
    assert queued(eve_b, "msg", mid=sent["mid"]) == []
    dana_b.ok("send", to="t1-eve", body="marker", cid="dm-3")
    dana_a.event("msg", cid="dm-3")
    assert queued(dana_a, "msg", mid=answer["mid"]) == []


# -- presence across nodes ------------------------------------------------------------------------


def test_presence_follows_a_user_across_nodes_until_their_last_connection_is_gone(
    cluster: Cluster, clients: list[Client]
) -> None:
    watcher = connect(clients, cluster["A"], "t2-watcher")
    watcher.ok("watch", users=["t2-frank"])
    assert watcher.ok("presence", users=["t2-frank"])["statuses"] == {"t2-frank": "offline"}

    frank_b = connect(clients, cluster["B"], "t2-frank")
    assert watcher.event("presence", user="t2-frank")["status"] == "online"
    # Asked on any node, presence answers for the whole cluster.
    asker = connect(clients, cluster["C"], "t2-asker")
    statuses = asker.ok("presence", users=["t2-frank", "t2-nobody"])["statuses"]
    assert statuses == {"t2-frank": "online", "t2-nobody": "offline"}

    frank_c = connect(clients, cluster["C"], "t2-frank")
    # A user who leaves node B just after Frank's connection there: B ends the two grace
    # periods in the order they began and announces through the same channel, so the control's
    # offline event is the barrier before which a wrong one for Frank would have arrived.
    watcher.ok("watch", users=["t2-control"])
    control = connect(clients, cluster["B"], "t2-control")
    assert watcher.event("presence", user="t2-control")["status"] == "online"
    open_on_b = cluster["B"].open_connections()
    frank_b.close()
    wait_until(lambda: cluster["B"].open_connections() < open_on_b, what="B saw Frank leave")
    control.close()
    # Past the grace, with a connection left on C, Frank stays online.
    assert watcher.event("presence", user="t2-control")["status"] == "offline"
    assert queued(watcher, "presence", user="t2-frank") == []
    assert asker.ok("presence", users=["t2-frank"])["statuses"] == {"t2-frank": "online"}

    closed_at = time.monotonic()
    frank_c.close()
    assert watcher.event("presence", user="t2-frank")["status"] == "offline"
    assert time.monotonic() - closed_at >= PRESENCE_GRACE * 0.8
    assert asker.ok("presence", users=["t2-frank"])["statuses"] == {"t2-frank": "offline"}


# -- sessions and services that are not nodes -----------------------------------------------------


def test_list_sessions_names_every_connection_with_its_user_and_node(
    cluster: Cluster, clients: list[Client]
) -> None:
    expected = {}
    for node, user in (("A", "t9-hal"), ("B", "t9-hal"), ("C", "t9-ida")):
        client, reply = cluster[node].client(user)
        clients.append(client)
        expected[reply["session"]] = (user, node)

    def ours() -> dict[str, tuple[str, str]]:
        return {
            s["session"]: (s["user"], s["node"])
            for s in list_sessions(cluster.redis_url)
            if s["user"].startswith("t9-")
        }

    wait_until(lambda: ours() == expected, what="the three sessions in Redis")
    clients[0].close()
    del expected[next(iter(expected))]
    wait_until(lambda: ours() == expected, what="the closed session gone")


def test_a_service_publishing_through_redis_reaches_room_members_and_users_on_the_nodes(
    cluster: Cluster, clients: list[Client]
) -> None:
    member = connect(clients, cluster["A"], "t8-member")
    member.ok("join", room="t8-room")
    gina = connect(clients, cluster["B"], "t8-gina")

    with Publisher(cluster.redis_url) as publisher:
        posted = publisher.publish({"text": "build 812 passed"}, room="t8-room", sender="ci-bot")
        direct = publisher.publish("your export is ready", to="t8-gina", sender="exports")

    got = member.event("msg", mid=posted.mid)
    assert (got["from"], got["body"], got["seq"]) == ("ci-bot", {"text": "build 812 passed"}, 1)
    got = gina.event("msg", mid=direct.mid)
    assert (got["from"], got["to"], got["body"]) == ("exports", "t8-gina", "your export is ready")

    assert [m["mid"] for m in history(member, "t8-room")] == [posted.mid]
    page = gina.ok("history", **{"with": "exports"})
    assert [m["mid"] for m in page["messages"]] == [direct.mid]


# -- behind nginx ---------------------------------------------------------------------------------


def find_nginx() -> str:
    """The nginx program; skips the test without one (fails it when CI is "true")."""
    if NGINX is None:
        reason = "nginx is not installed (apt-get install nginx) so the proxy set-up is untested"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return NGINX


class NginxProcess:
    """A private nginx running docs/nginx.conf, rendered for local nodes, in ``directory``."""

    def __init__(self, directory: Path, upstreams: list[NodeProcess], *, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.upstreams = upstreams
        for sub in ("state", "logs"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.conf = directory / "nginx.conf"
        self.log = directory / "logs" / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._listen_on(free_port())

    def _listen_on(self, port: int) -> None:
        """Render the configuration for ``port`` (nginx cannot listen on 0 and say which port
        it got: a port is picked, and another tried if it was taken meanwhile)."""
        self.port = port
        rendered = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
            ACTORIM_LISTEN=f"127.0.0.1:{port}",
            ACTORIM_UPSTREAMS="\n        ".join(
                f"server 127.0.0.1:{n.port};" for n in self.upstreams
            ),
            NGINX_STATE_DIR=str(self.directory / "state"),
            NGINX_LOG_DIR=str(self.directory / "logs"),
            NGINX_PID_FILE=str(self.directory / "nginx.pid"),
        )
        self.conf.write_text(rendered)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        main = "daemon off;"  # the template names the pid file and the error log
        if os.geteuid() == 0:
            main += " user root;"  # workers may then read the test's private directories
        for tries in range(1, BIND_TRIES + 1):
            logged = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "-p", str(self.directory), "-c", str(self.conf), "-g", main],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_healthy():
                return
            said = self.log.read_bytes()[logged:]
            if b"Address already in use" not in said or tries == BIND_TRIES:
                break
            self._listen_on(free_port())  # taken between the pick and the bind
        self.stop()
        raise AssertionError(f"nginx did not start:\n{self.log.read_text()}")

    def _wait_healthy(self) -> bool:
        """Whether nginx answers /healthz before it exits or START_TIMEOUT passes."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if http_get(f"{self.http}/healthz", timeout=1.0)[0] == 200:
                    return True
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            gevent.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # Fast shutdown: a graceful one (SIGQUIT) waits for the WebSockets it proxies,
            # which a test still holds, and would end in the kill below after 5 s.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def nginx(cluster: Cluster, tmp_path: Path) -> Iterator[NginxProcess]:
    proxy = NginxProcess(tmp_path / "nginx", [cluster["A"], cluster["B"]], binary=find_nginx())
    proxy.start()
    yield proxy
    proxy.stop()


def test_through_nginx_clients_spread_over_two_nodes_and_chat_across_them(
    nginx: NginxProcess, clients: list[Client]
) -> None:
    connected: dict[str, list[Client]] = {}
    for n in range(4):
        client = Client(nginx.url)
        clients.append(client)
        reply = client.connect(TOKENS.mint(f"t6-user{n}"))
        connected.setdefault(reply["node"], []).append(client)
    assert set(connected) == {"A", "B"}, "least_conn should spread open connections"

    on_a, on_b = connected["A"][0], connected["B"][0]
    for client in (on_a, on_b):
        client.ok("join", room="t6-room")
    sent = on_a.ok("send", room="t6-room", body="from A", cid="a")
    assert on_b.event("msg", mid=sent["mid"])["body"] == "from A"
    sent = on_b.ok("send", room="t6-room", body="from B", cid="b")
    assert on_a.event("msg", mid=sent["mid"])["body"] == "from B"

    # Outside development mode a browser origin must be configured (public_url): one that
    # merely matches the Host that nginx forwards is refused (DNS rebinding).
    assert handshake_status(nginx.url, origin=nginx.http) == 403
    assert http_get(f"{nginx.http}/readyz")[0] == 200
    assert http_get(f"{nginx.http}/metrics")[0] == 404


def test_through_nginx_a_draining_node_passes_new_websockets_to_the_other_node(
    cluster: Cluster, spawn: Spawner, clients: list[Client], tmp_path: Path
) -> None:
    # P drains over 2 s with two clients of its own: 1 s passes between their closes.
    drain = ("--drain-seconds", "2")
    (draining,) = spawn(cluster.redis_url, "P", namespace="t10", args=drain)
    (other,) = spawn(cluster.redis_url, "Q", namespace="t10")
    proxy = NginxProcess(tmp_path / "nginx", [draining, other], binary=find_nginx())
    proxy.start()
    try:
        held = [draining.client(f"t10-held{n}")[0] for n in range(2)]
        clients.extend(held)
        assert draining.proc is not None
        draining.proc.send_signal(signal.SIGTERM)
        closes = [gevent.spawn(client.wait_closed, timeout=10) for client in held]
        (closed,) = gevent.wait(closes, count=1, timeout=10)
        assert closed.get().code == 1012
        # P answers upgrades with 503 now; nginx tries Q instead, and nobody sees the refusal.
        for n in range(6):
            client = Client(proxy.url)
            clients.append(client)
            assert client.connect(TOKENS.mint(f"t10-user{n}"))["node"] == "Q"
        assert draining.proc.wait(timeout=15) == 0
    finally:
        proxy.stop()


# -- dead nodes -----------------------------------------------------------------------------------


def test_a_killed_nodes_users_are_announced_offline_and_leave_their_rooms_within_node_timeout(
    cluster: Cluster, spawn: Spawner, clients: list[Client]
) -> None:
    survivor, victim = spawn(cluster.redis_url, "S", "V", namespace="t3")
    watcher = connect(clients, survivor, "t3-watcher")
    watcher.ok("watch", users=["t3-jack", "t3-kim"])
    watcher.ok("join", room="t3-room")
    jack = connect(clients, victim, "t3-jack")
    kim = connect(clients, victim, "t3-kim")
    for client in (jack, kim):
        client.ok("join", room="t3-room")
    for user in ("t3-jack", "t3-kim"):
        assert watcher.event("presence", user=user)["status"] == "online"
        assert watcher.event("member", user=user)["state"] == "joined"

    killed_at = time.monotonic()
    victim.kill()
    for user in ("t3-jack", "t3-kim"):
        assert (
            watcher.event("presence", user=user, timeout=NODE_TIMEOUT + REAP_SLACK)["status"]
            == "offline"
        )
        assert watcher.event("member", user=user, timeout=1.0)["state"] == "left"
    assert time.monotonic() - killed_at < NODE_TIMEOUT + REAP_SLACK

    # No ghost: the cluster agrees they are gone.
    statuses = watcher.ok("presence", users=["t3-jack", "t3-kim"])["statuses"]
    assert statuses == {"t3-jack": "offline", "t3-kim": "offline"}
    newcomer = connect(clients, survivor, "t3-newcomer")
    assert sorted(newcomer.ok("join", room="t3-room")["members"]) == ["t3-newcomer", "t3-watcher"]
    assert {s["node"] for s in list_sessions(cluster.redis_url, namespace="t3")} == {"S"}


def test_a_node_declared_dead_while_it_lives_registers_its_users_again(
    cluster: Cluster, spawn: Spawner, clients: list[Client]
) -> None:
    node_a, node_b = spawn(cluster.redis_url, "A", "B", namespace="t13")
    watcher = connect(clients, node_b, "t13-watcher")
    watcher.ok("watch", users=["t13-amy"])
    watcher.ok("join", room="t13-room")
    amy = connect(clients, node_a, "t13-amy")
    amy.ok("join", room="t13-room")
    assert watcher.event("presence", user="t13-amy")["status"] == "online"
    assert watcher.event("member", user="t13-amy")["state"] == "joined"

    # A's liveness key keeps disappearing (a stall longer than its TTL looks the same to B)
    # until B has reaped A.
    admin = cluster.redis.client()
    keys = ClusterKeys("t13")

    def lose_liveness() -> None:
        while True:
            admin.delete(keys.node_alive("A"))
            gevent.sleep(0.01)

    deleter = gevent.spawn(lose_liveness)
    try:
        wait_until(
            lambda: "node A stopped refreshing its liveness" in node_b.log.read_text(),
            # A bound, not a speed: on a loaded machine the deleter and B's reaper both run late.
            timeout=4 * NODE_TIMEOUT + REAP_SLACK,
            what="A reaped by B (B's log says so)",
        )
    finally:
        deleter.kill()

    # A, alive all along, notices and registers its connections again.
    def registered_again() -> bool:
        statuses = watcher.ok("presence", users=["t13-amy"])["statuses"]
        members = sorted(watcher.ok("join", room="t13-room")["members"])
        sessions = {
            (s["user"], s["node"]) for s in list_sessions(cluster.redis_url, namespace="t13")
        }
        return (
            statuses == {"t13-amy": "online"}
            and members == ["t13-amy", "t13-watcher"]
            and sessions == {("t13-amy", "A"), ("t13-watcher", "B")}
        )

    wait_until(registered_again, timeout=2 * NODE_TIMEOUT, interval=0.1, what="A registered")
    # Whatever its watchers were told meanwhile, the last word is that Amy is online.
    presence = [e for e in watcher.events if e.get("t") == "presence" and e["user"] == "t13-amy"]
    assert not presence or presence[-1]["status"] == "online"
    admin.close()


# -- Redis away, cut off or hung ------------------------------------------------------------------


# Pause between a streamer's sends: 50 a second, within the default rate limit (100/s).
STREAM_PAUSE = 0.02


class Streamer:
    """Sends into a room one after the other, with a cid each; records what was acknowledged
    and what was refused, so that the unacknowledged sends can be resent with their cids."""

    def __init__(self, client: Client, room: str) -> None:
        self.client = client
        self.room = room
        self.acked: dict[str, tuple[str, int]] = {}
        self.refused: dict[str, str] = {}
        self._job: gevent.Greenlet | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._job = gevent.spawn(self._run)

    def stop(self) -> None:
        self._running = False
        assert self._job is not None
        self._job.get(timeout=10)

    def _run(self) -> None:
        n = 0
        while self._running:
            cid = f"s{n}"
            n += 1
            reply = self.client.request("send", room=self.room, body=cid, cid=cid)
            if reply["ok"]:
                self.acked[cid] = (reply["data"]["mid"], reply["data"]["seq"])
            else:
                self.refused[cid] = reply["error"]["code"]
            gevent.sleep(STREAM_PAUSE)

    def resend_refused(self) -> None:
        for cid in list(self.refused):
            data = self.client.ok("send", room=self.room, body=cid, cid=cid)
            self.acked[cid] = (data["mid"], data["seq"])
            del self.refused[cid]


def test_while_redis_is_away_nodes_keep_their_websockets_refuse_sends_and_recover_everything(
    redis_server: Callable[..., RedisServer],
    spawn: Spawner,
    clients: list[Client],
) -> None:
    redis = redis_server()
    url = redis_url_of(redis)
    node_a, node_b = spawn(url, "A", "B", args=("--heartbeat", "0.3"))
    room = "t4-room"
    sender = connect(clients, node_a, "t4-sender")
    receiver = connect(clients, node_b, "t4-receiver")
    leaver = connect(clients, node_b, "t4-leaver")
    for client in (sender, receiver, leaver):
        client.ok("join", room=room)
    for user in ("t4-receiver", "t4-leaver"):
        assert sender.event("member", user=user)["state"] == "joined"
    sender.ok("watch", users=["t4-leaver", "t4-late"])
    raw = RawWebSocket("127.0.0.1", node_b.port)
    raw.ok("connect", token=TOKENS.mint("t4-raw"))

    streamer = Streamer(sender, room)
    streamer.start()
    wait_until(lambda: len(streamer.acked) >= 20, what="traffic before Redis goes away")
    redis.kill()

    # The link's breaker opens; the node stops being ready and refuses sends, but keeps its
    # WebSockets, its heartbeats and the commands that need no Redis.
    for node in (node_a, node_b):
        wait_until(lambda node=node: node.breaker_state() == 2, what=f"{node.name}'s breaker open")
        assert node.ready_status() == 503
    wait_until(lambda: streamer.refused, what="a send refused")
    assert set(streamer.refused.values()) <= {"overloaded", "internal"}
    assert receiver.error("send", room=room, body="x", cid="while-open")["code"] == "overloaded"
    pings = 0
    while pings < 2:
        frame = raw.read_frame(timeout=2.0)
        assert frame is not None, "the node dropped a WebSocket while Redis was away"
        pings += frame[0] == OPCODE_PING
    receiver.ok("ping")
    # Users come and go meanwhile; presence answers from what the node knows itself.
    late = connect(clients, node_b, "t4-late")
    # A join subscribes the connection; its membership cannot last while Redis is away.
    assert late.ok("join", room=room)["lasting"] is False
    leaver.close()
    statuses = receiver.ok("presence", users=["t4-late", "t4-receiver"])["statuses"]
    assert statuses == {"t4-late": "online", "t4-receiver": "online"}
    acked_before_restart = len(streamer.acked)

    redis.start()
    # Published while the nodes' listeners are likely still reconnecting: what they miss, the
    # rooms' repair brings.
    with Publisher(url) as publisher:
        published = publisher.publish("while the nodes were away", room=room, sender="bot")
    for node in (node_a, node_b):
        wait_until(
            lambda node=node: node.ready_status() == 200,
            timeout=RECOVERY_TIMEOUT,
            what=f"{node.name} ready again",
        )
        assert node.breaker_state() == 0
    wait_until(
        lambda: len(streamer.acked) > acked_before_restart + 5,
        timeout=RECOVERY_TIMEOUT,
        what="sends acknowledged again",
    )
    streamer.stop()
    streamer.resend_refused()
    receiver.ok("send", room=room, body="x", cid="while-open")

    # Every acknowledged message is stored once, with the seq its reply gave.
    stored = history(receiver, room)
    stored_cids = [m.get("cid") for m in stored]
    assert len(stored_cids) == len(set(stored_cids)), "a message was stored twice"
    by_mid = {m["mid"]: m for m in stored}
    for cid, (mid, seq) in streamer.acked.items():
        assert by_mid[mid]["seq"] == seq and by_mid[mid]["cid"] == cid
    assert published.mid in by_mid
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))

    # The member on the other node got every message once, in order, the gap repaired.
    expected = [m["seq"] for m in stored if m.get("cid") != "while-open"]
    got = receive_msgs(receiver, len(expected), room=room)
    assert [m["seq"] for m in got] == expected
    assert queued(receiver, "msg") == []

    # The node re-registered what changed while Redis was away, for the whole cluster to see.
    assert sender.event("member", user="t4-late", timeout=2.0)["state"] == "joined"
    assert sender.event("member", user="t4-leaver", timeout=2.0)["state"] == "left"
    assert sender.event("presence", user="t4-late", timeout=2.0)["status"] == "online"
    assert sender.event("presence", user="t4-leaver", timeout=2.0)["status"] == "offline"
    statuses = sender.ok("presence", users=["t4-late", "t4-leaver"])["statuses"]
    assert statuses == {"t4-late": "online", "t4-leaver": "offline"}
    members = sender.ok("join", room=room)["members"]
    assert sorted(members) == ["t4-late", "t4-receiver", "t4-sender"]
    for client in (sender, receiver):
        assert client.closed is None
    raw.close()


def test_a_node_cut_off_from_redis_catches_up_on_the_arrivals_and_departures_on_both_sides(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    redis = redis_server()
    admin = redis.client()
    # Node A has a Redis user of its own, so that only A can be cut off.
    admin.execute_command("ACL", "SETUSER", "node-a", "on", ">node-a-pw", "~*", "&*", "+@all")
    node_a = spawn.node("A", f"redis://node-a:node-a-pw@127.0.0.1:{redis.port}/0")
    node_b = spawn.node("B", redis_url_of(redis))
    spawn.start(node_a, node_b)
    watcher = connect(clients, node_a, "t10-watcher")
    watcher.ok("join", room="t10-room")
    watcher.ok("watch", users=["t10-bob", "t10-carl", "t10-uma"])
    uma = connect(clients, node_a, "t10-uma")
    uma.ok("join", room="t10-other")
    carl = connect(clients, node_b, "t10-carl")
    carl.ok("join", room="t10-room")
    observer = connect(clients, node_b, "t10-observer")
    observer.ok("join", room="t10-other")
    assert watcher.event("member", user="t10-carl")["state"] == "joined"
    for user in ("t10-uma", "t10-carl"):
        assert watcher.event("presence", user=user)["status"] == "online"

    admin.execute_command("ACL", "SETUSER", "node-a", "-@all")
    admin.execute_command("CLIENT", "KILL", "USER", "node-a")
    wait_until(lambda: node_a.breaker_state() == 2, what="A cut off")

    # Meanwhile, on B: Bob arrives, Carl leaves and goes offline. On A: Uma leaves her room
    # (the last member it had on A) and goes offline.
    bob = connect(clients, node_b, "t10-bob")
    bob.ok("join", room="t10-room")
    carl.close()
    uma.ok("leave", room="t10-other")
    uma.close()
    wait_until(
        lambda: observer.ok("presence", users=["t10-carl"])["statuses"]["t10-carl"] == "offline",
        what="Carl offline in the cluster",
    )

    admin.execute_command("ACL", "SETUSER", "node-a", "+@all")
    wait_until(lambda: node_a.ready_status() == 200, timeout=RECOVERY_TIMEOUT, what="A back")
    # A's watcher hears what it missed; B's observer hears what A could not tell.
    assert watcher.event("member", user="t10-bob", timeout=2.0)["state"] == "joined"
    assert watcher.event("member", user="t10-carl", timeout=2.0)["state"] == "left"
    for user, status in (("t10-bob", "online"), ("t10-carl", "offline"), ("t10-uma", "offline")):
        assert watcher.event("presence", user=user, timeout=2.0)["status"] == status
    assert observer.event("member", user="t10-uma", timeout=2.0)["state"] == "left"
    assert observer.ok("presence", users=["t10-uma"])["statuses"] == {"t10-uma": "offline"}
    assert observer.ok("join", room="t10-other")["members"] == ["t10-observer"]
    sessions = list_sessions(redis_url_of(redis))
    assert sorted((s["user"], s["node"]) for s in sessions) == [
        ("t10-bob", "B"),
        ("t10-observer", "B"),
        ("t10-watcher", "A"),
    ]
    # Each once: Bob leaving now is the next member event the watcher gets.
    bob.ok("leave", room="t10-room")
    assert watcher.event("member", timeout=2.0)["user"] == "t10-bob"
    assert queued(watcher, "member") == []
    assert queued(watcher, "presence") == []
    admin.close()


def test_a_gap_the_store_cannot_replay_yet_is_replayed_later_before_what_followed_it(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    redis = redis_server()
    admin = redis.client()
    admin.execute_command("ACL", "SETUSER", "node-b", "on", ">node-b-pw", "~*", "&*", "+@all")
    node_a = spawn.node("A", redis_url_of(redis))
    node_b = spawn.node("B", f"redis://node-b:node-b-pw@127.0.0.1:{redis.port}/0")
    spawn.start(node_a, node_b)
    sender = connect(clients, node_a, "t12-sender")
    member = connect(clients, node_b, "t12-member")
    for client in (sender, member):
        client.ok("join", room="t12-room")

    # B stops hearing; a message goes by; then B hears again but cannot read the room's log.
    admin.execute_command("ACL", "SETUSER", "node-b", "-subscribe", "-psubscribe", "-ssubscribe")
    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "USER", "node-b")
    wait_until(lambda: node_b.ready_status() == 503, what="B deaf")
    missed = sender.ok("send", room="t12-room", body="missed", cid="missed")
    admin.execute_command("ACL", "SETUSER", "node-b", "+@all", "-xrange", "-xrevrange")
    wait_until(lambda: node_b.ready_status() == 200, timeout=RECOVERY_TIMEOUT, what="B hears")
    live = sender.ok("send", room="t12-room", body="live", cid="live")

    admin.execute_command("ACL", "SETUSER", "node-b", "+@all")
    assert member.event("msg", timeout=5.0)["mid"] == missed["mid"]
    assert member.event("msg", timeout=1.0)["mid"] == live["mid"]
    admin.close()


def test_after_a_long_redis_outage_a_user_who_leaves_is_still_announced_offline(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    redis = redis_server()
    (node,) = spawn(redis_url_of(redis), "A", args=("--node-timeout", "1"))
    watcher = connect(clients, node, "t14-watcher")
    watcher.ok("watch", users=["t14-ann"])
    ann = connect(clients, node, "t14-ann")
    assert watcher.event("presence", user="t14-ann")["status"] == "online"
    # The node refreshes its liveness once with them connected, as a node up for a while has.
    admin = redis.client()
    alive = ClusterKeys().node_alive("A")
    refreshed_at = admin.get(alive)
    wait_until(lambda: admin.get(alive) != refreshed_at, what="a liveness refresh")
    admin.close()

    redis.stop()
    gevent.sleep(LONG_OUTAGE_S)
    redis.start()
    wait_until(lambda: node.ready_status() == 200, timeout=RECOVERY_TIMEOUT, what="ready")
    ann.close()
    assert watcher.event("presence", user="t14-ann", timeout=3.0)["status"] == "offline"
    assert watcher.ok("presence", users=["t14-ann"])["statuses"] == {"t14-ann": "offline"}


# How long a node may take to answer a command while its Redis hangs: well under the Redis
# client's socket timeout (2 s), which no command may wait on once the breaker is open.
ANSWER_WHILE_OPEN_S = 1.0


def test_a_redis_that_hangs_is_treated_as_down_and_the_node_answers_at_once(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    redis = redis_server()
    admin = redis.client()
    redis_pid = int(admin.info("server")["process_id"])
    (node,) = spawn(redis_url_of(redis), "A")
    member = connect(clients, node, "t11-member")
    member.ok("join", room="t11-room")

    os.kill(redis_pid, signal.SIGSTOP)  # Redis keeps its sockets open and answers nothing
    try:
        wait_until(lambda: node.breaker_state() == 2, what="the breaker open")

        def newcomer(n: int) -> float:
            started = time.monotonic()
            client, _reply = node.client(f"t11-user{n}")
            clients.append(client)
            client.ok("join", room="t11-room")
            client.ok("presence", users=["t11-member"])
            assert client.error("send", room="t11-room", body="x")["code"] == "overloaded"
            assert client.error("history", room="t11-room")["code"] == "overloaded"
            return time.monotonic() - started

        jobs = [gevent.spawn(newcomer, n) for n in range(4)]
        gevent.joinall(jobs, raise_error=True)
        assert max(job.value for job in jobs) < ANSWER_WHILE_OPEN_S
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    wait_until(lambda: node.ready_status() == 200, timeout=RECOVERY_TIMEOUT, what="ready again")
    member.ok("send", room="t11-room", body="back", cid="back")
    admin.close()


# -- ready only once subscribed -------------------------------------------------------------------


def test_after_a_redis_restart_a_node_is_ready_only_once_its_subscriptions_are_back(
    redis_server: Callable[..., RedisServer],
    spawn: Spawner,
    clients: list[Client],
) -> None:
    redis = redis_server()
    url = redis_url_of(redis)
    node_a, node_b = spawn(url, "A", "B")
    sender = connect(clients, node_a, "t5-sender")
    member = connect(clients, node_b, "t5-member")
    for client in (sender, member):
        client.ok("join", room="t5-room")

    redis.stop()
    wait_until(lambda: node_b.breaker_state() == 2, what="B's breaker open")
    gevent.sleep(OUTAGE_S)
    redis.start()
    wait_until(lambda: node_b.ready_status() == 200, timeout=RECOVERY_TIMEOUT, interval=0.002)
    with Publisher(url) as publisher:
        published = publisher.publish("right after ready", room="t5-room", sender="bot")
    assert member.event("msg", timeout=2.0)["mid"] == published.mid

    wait_until(lambda: node_a.ready_status() == 200, timeout=RECOVERY_TIMEOUT, interval=0.002)
    sent = sender.ok("send", room="t5-room", body="from A", cid="from-a")
    assert member.event("msg", timeout=2.0)["mid"] == sent["mid"]


def denied_subscribes(admin: Any) -> int:
    """How many SUBSCRIBE commands Redis refused under its ACL (from ACL LOG)."""
    return sum(
        int(entry["count"])
        for entry in admin.acl_log()
        if entry.get("object") in ("subscribe", b"subscribe")
    )


def test_a_node_that_cannot_subscribe_is_not_ready_and_misses_nothing_once_it_can(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    redis = redis_server()
    admin = redis.client()
    admin.execute_command("ACL", "SETUSER", "node-b", "on", ">node-b-pw", "~*", "&*", "+@all")
    (node,) = spawn(f"redis://node-b:node-b-pw@127.0.0.1:{redis.port}/0", "B")
    member = connect(clients, node, "t5-member")
    member.ok("join", room="t5-room")

    # The link goes: the breaker's probes (PING) fail and it opens.
    admin.execute_command("ACL", "SETUSER", "node-b", "-ping", "-subscribe", "-psubscribe")
    admin.execute_command("CLIENT", "KILL", "USER", "node-b")
    wait_until(lambda: node.breaker_state() == 2, what="the breaker open")
    # Redis answers again, SUBSCRIBE excepted: the probes succeed and close the breaker, but
    # the listener cannot get its channels back.
    admin.execute_command("ACL", "SETUSER", "node-b", "+ping")
    wait_until(lambda: node.breaker_state() == 0, timeout=10, what="the breaker closed again")
    assert denied_subscribes(admin) > 0
    assert node.ready_status() == 503
    assert member.error("send", room="t5-room", body="x")["code"] == "overloaded"

    admin.execute_command("ACL", "SETUSER", "node-b", "+@all")
    wait_until(lambda: node.ready_status() == 200, timeout=RECOVERY_TIMEOUT, interval=0.002)
    with Publisher(redis_url_of(redis)) as publisher:
        published = publisher.publish("right after ready", room="t5-room", sender="bot")
    assert member.event("msg", timeout=2.0)["mid"] == published.mid
    admin.close()


def _documented_block(doc: Path, marker: str) -> str:
    """The fenced block that follows ``<!-- marker -->`` in a Markdown file."""
    text = doc.read_text()
    after = text[text.index(f"<!-- {marker} -->") :]
    return after.split("```\n", 2)[1]


def test_the_documented_nginx_check_works_as_written_for_a_user_without_root() -> None:
    nginx = find_nginx()
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        reason = "envsubst is missing (apt-get install gettext-base): the nginx docs are untested"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    root = NGINX_TEMPLATE.parent.parent
    script = _documented_block(root / "docs" / "deploy.md", "try-nginx")
    # A directory of its own that any user may write, under /tmp (a private TMPDIR of the
    # test's own would not let another user in).
    tmp = Path(tempfile.mkdtemp(prefix="actorim-nginx-doc-", dir="/tmp"))
    try:
        tmp.chmod(0o777)
        # The template, where any user may read it (the checkout itself may be private).
        checkout = tmp / "checkout"
        (checkout / "docs").mkdir(parents=True)
        shutil.copy(NGINX_TEMPLATE, checkout / "docs" / "nginx.conf")
        for directory in (checkout, checkout / "docs"):
            directory.chmod(0o755)
        (checkout / "docs" / "nginx.conf").chmod(0o644)
        command = ["bash", "-euc", script]
        if os.geteuid() == 0:  # root writes anywhere: run it as nobody to prove it needs no root
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        path = os.pathsep.join(
            dict.fromkeys([str(Path(nginx).parent), str(Path(envsubst).parent), os.defpath])
        )
        done = subprocess.run(
            command,
            cwd=checkout,
            env={"PATH": path, "TMPDIR": str(tmp)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "test is successful" in done.stderr
        conf = (tmp / "actorim-nginx" / "nginx.conf").read_text()
        assert f"pid {tmp}/actorim-nginx/nginx.pid;" in conf
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- --workers N ----------------------------------------------------------------------------------


# How long the test looks for both workers: each new connection lands on one of them (the
# kernel hashes it), and a worker that is still starting is not among them yet.
FIND_WORKERS_TIMEOUT = 15.0


def test_workers_share_one_port_as_a_cluster_and_drain_on_sigterm(
    cluster: Cluster, spawn: Spawner, clients: list[Client]
) -> None:
    (server,) = spawn(cluster.redis_url, "W", namespace="t7", args=("--workers", "2"))
    by_worker: dict[str, Client] = {}
    deadline = time.monotonic() + FIND_WORKERS_TIMEOUT
    n = 0
    while len(by_worker) < 2 and time.monotonic() < deadline:
        client, reply = server.client(f"t7-user{n}")
        n += 1
        if reply["node"] in by_worker:
            client.close()
        else:
            clients.append(client)
            by_worker[reply["node"]] = client
    assert sorted(by_worker) == ["W-0", "W-1"]

    first, second = by_worker["W-0"], by_worker["W-1"]
    for client in (first, second):
        client.ok("join", room="t7-room")
    sent = first.ok("send", room="t7-room", body="from worker 0", cid="w0")
    assert second.event("msg", mid=sent["mid"])["body"] == "from worker 0"
    sent = second.ok("send", room="t7-room", body="from worker 1", cid="w1")
    assert first.event("msg", mid=sent["mid"])["body"] == "from worker 1"

    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    for client in clients:
        assert client.wait_closed().code == 1012
    assert server.proc.wait(timeout=15) == 0
    assert list_sessions(cluster.redis_url, namespace="t7") == []


def test_development_workers_share_one_secret_so_any_dev_token_connects_to_any_worker(
    cluster: Cluster, spawn: Spawner, clients: list[Client]
) -> None:
    (server,) = spawn(
        cluster.redis_url, "D", namespace="t8", args=("--workers", "2", "--dev"), secret=None
    )
    seen: set[str] = set()
    deadline = time.monotonic() + FIND_WORKERS_TIMEOUT
    n = 0
    # Each request and each connection lands on either worker: a token minted by one and
    # presented to the other turns up within a few tries.
    while (len(seen) < 2 or n < 8) and time.monotonic() < deadline:
        status, _headers, body = http_get(f"{server.http}/dev/token?user=t8-user{n}")
        assert status == 200
        client = Client(server.url)
        clients.append(client)
        seen.add(client.connect(json.loads(body)["token"])["node"])
        client.close()
        n += 1
    assert seen == {"D-0", "D-1"}


def test_workers_on_a_busy_port_stop_at_once_saying_so_without_a_traceback(
    cluster: Cluster, tmp_path: Path
) -> None:
    node = NodeProcess("Busy", cluster.redis_url, tmp_path, args=("--workers", "2"))
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        node.port = other.getsockname()[1]
        result = subprocess.run(
            node.command(),
            env=node_environment(cluster.redis_url, "t9"),
            capture_output=True,
            timeout=60,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_CANNOT_LISTEN, stderr
    assert "Traceback" not in stderr, stderr
    assert f"cannot listen on 127.0.0.1:{node.port}: Address already in use" in stderr
    assert "restarting" not in stderr


def test_workers_without_redis_exit_at_once_saying_redis_url_is_needed(tmp_path: Path) -> None:
    node = NodeProcess("W", None, tmp_path, args=("--workers", "2"))
    result = subprocess.run(
        node.command(),
        env=node_environment(None, "actorim"),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert b"REDIS_URL" in result.stderr
