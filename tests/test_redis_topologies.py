"""The cluster suite against Redis Cluster and Sentinel, with real ``actorim serve`` nodes.

One topology per module run (parametrised, module-scoped): a Redis Cluster of three masters and
three replicas, then a Sentinel-watched master and replica, every server speaking TLS only and
requiring a password (``rediss+cluster://`` and ``rediss+sentinel://`` URLs); three nodes A, B and
C on it with ``redis_min_replicas=1``. Rooms, direct messages and presence across the nodes are the
tests of tests/test_cluster.py, and lasting membership those of tests/test_membership_cluster.py,
run on these topologies; so is the ``Publisher``. A room's slot migrates while messages flow, and
loses nothing. Then a master is killed with SIGKILL while messages flow: sends are answered
overloaded until a replica took over and the old master came back as its replica; no acknowledged
message is missing or doubled (the counts are printed), the nodes are ready again, and ready means
subscribed (an ephemeral event, which nothing repairs, crosses the nodes at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from actorim.redis.keys import ClusterKeys
from actorim.tools.publisher import Publisher
from tests import test_cluster as suite
from tests import test_membership_cluster as membership
from tests.redis_server import make_tls
from tests.redis_topologies import RedisClusterSet, SentinelSet
from tests.support import Client, wait_until
from tests.two_nodes import TwoNodes

pytestmark = [pytest.mark.process, pytest.mark.slow]

# Sends of the failover test: how many are acknowledged before the master is killed, and in all.
BEFORE_KILL = 40
TOTAL = 120
# How long a failover may take until every node is ready again.
FAILOVER_TIMEOUT = 30.0


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisClusterSet | SentinelSet]:
    directory = tmp_path_factory.mktemp(request.param)
    tls = make_tls(directory / "tls")
    made = (
        RedisClusterSet(directory, tls=tls)
        if request.param == "cluster"
        else SentinelSet(directory, tls=tls)
    )
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture(scope="module")
def cluster(
    topology: RedisClusterSet | SentinelSet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[suite.Cluster]:
    """Nodes A, B and C on ``topology``, acknowledging a send once a replica has it."""
    directory = tmp_path_factory.mktemp("nodes")
    # The default heartbeat: a TLS handshake costs CPU, and on a loaded machine reconnecting
    # can take longer than tests/test_cluster.py's 0.2 s heartbeat allows.
    args = ("--redis-min-replicas", "1", "--redis-wait-timeout", "0.5", "--redis-heartbeat", "1")
    nodes = {name: suite.NodeProcess(name, topology.url, directory, args=args) for name in "ABC"}
    try:
        suite.start_nodes(list(nodes.values()))
        yield suite.Cluster(None, topology.url, nodes)  # type: ignore[arg-type]
    finally:
        for node in nodes.values():
            node.kill()


def test_room_members_on_three_nodes_see_every_message_once_in_order(
    cluster: suite.Cluster, clients: list[Client]
) -> None:
    suite.test_room_members_on_three_nodes_see_every_message_once_in_the_same_seq_order(
        cluster, clients
    )


def test_direct_messages_reach_every_connection_of_both_users_across_nodes(
    cluster: suite.Cluster, clients: list[Client]
) -> None:
    suite.test_direct_messages_reach_every_connection_of_both_users_on_any_node_but_the_sending_one(
        cluster, clients
    )


def test_presence_follows_a_user_across_nodes(
    cluster: suite.Cluster, clients: list[Client]
) -> None:
    suite.test_presence_follows_a_user_across_nodes_until_their_last_connection_is_gone(
        cluster, clients
    )


def test_membership_and_the_inbox_are_shared_by_the_nodes(
    cluster: suite.Cluster, clients: list[Client]
) -> None:
    """Lasting membership (tests/test_membership_cluster.py) on this topology: a join on one
    node reaches the user's devices on another, and the inbox is the same from either."""
    pair = TwoNodes(None, cluster["A"], cluster["B"])  # type: ignore[arg-type]
    membership.test_a_join_on_one_node_subscribes_the_users_devices_on_the_other_and_leave_stops_them(
        pair, clients
    )
    membership.test_the_inbox_on_either_node_lists_rooms_and_direct_conversations(pair, clients)


def test_a_service_publishes_adds_members_and_revokes_through_the_publisher(
    cluster: suite.Cluster, clients: list[Client]
) -> None:
    """The ``Publisher`` takes the same URL as the nodes, whatever its topology."""
    suite.test_a_service_publishing_through_redis_reaches_room_members_and_users_on_the_nodes(
        cluster, clients
    )
    added = suite.connect(clients, cluster["C"], "pub-added")
    mallory = suite.connect(clients, cluster["B"], "pub-mallory")
    with Publisher(cluster.redis_url) as publisher:
        assert publisher.add_member("t8-room", "pub-added") is True
        added.event("member", room="t8-room", user="pub-added", state="joined")
        publisher.revoke_user("pub-mallory")
    assert mallory.wait_closed().code == 4003


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[suite.Spawner]:
    spawner = suite.Spawner(tmp_path)
    yield spawner
    spawner.kill_all()


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_a_killed_nodes_users_go_offline_and_leave_across_shards(
    topology: RedisClusterSet, cluster: suite.Cluster, spawn: suite.Spawner, clients: list[Client]
) -> None:
    """The reaper reads and removes a dead node's records at once on the node's own slot, and
    its users' presence and memberships on theirs; sessions are listed from every node's."""
    suite.test_a_killed_nodes_users_are_announced_offline_and_leave_their_rooms_within_node_timeout(
        cluster, spawn, clients
    )


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_sessions_are_listed_from_every_nodes_keys_across_shards(
    topology: RedisClusterSet, cluster: suite.Cluster, clients: list[Client]
) -> None:
    suite.test_list_sessions_names_every_connection_with_its_user_and_node(cluster, clients)


def _send_until_acked(client: Client, room: str, cid: str) -> tuple[dict[str, Any], int]:
    """Send ``cid`` until it is acknowledged, as a client does: resend by cid after each
    ``overloaded``; the acknowledgement and how many answers were overloaded."""
    refused = 0
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        reply = client.request("send", room=room, body=cid, cid=cid)
        if reply["ok"]:
            return reply["data"], refused
        assert reply["error"]["code"] == "overloaded", reply
        refused += 1
        assert time.monotonic() < deadline, f"{cid} never acknowledged: {reply}"
        gevent.sleep(0.05)


def _sender_and_reader(
    cluster: suite.Cluster, clients: list[Client], room: str, prefix: str
) -> tuple[Client, Client]:
    """Members of ``room``: a sender on node A, a reader on node B."""
    sender = suite.connect(clients, cluster["A"], f"{prefix}-sender")
    reader = suite.connect(clients, cluster["B"], f"{prefix}-reader")
    sender.ok("join", room=room)
    reader.ok("join", room=room)
    return sender, reader


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_a_room_whose_slot_migrates_while_messages_flow_loses_nothing(
    topology: RedisClusterSet, cluster: suite.Cluster, clients: list[Client]
) -> None:
    room = "migrating-room"
    sender, reader = _sender_and_reader(cluster, clients, room, "mig")
    channel = ClusterKeys().room_channel(room)
    target = next(m for m in topology.masters() if m is not topology.master_of(channel))

    def send_all() -> dict[str, int]:
        acked: dict[str, int] = {}
        for n in range(TOTAL):
            data, _overloaded = _send_until_acked(sender, room, f"mig-{n}")
            acked[f"mig-{n}"] = data["seq"]
        return acked

    sending = gevent.spawn(send_all)
    while reader.event("msg", room=room)["cid"] != f"mig-{BEFORE_KILL}":
        pass  # until the stream is well under way
    topology.migrate_slot(channel, target)
    acked = sending.get(timeout=FAILOVER_TIMEOUT)
    assert topology.master_of(channel) is target

    stored = suite.history(sender, room)
    assert {m["cid"]: m["seq"] for m in stored} == acked
    assert len(stored) == len(acked) == TOTAL
    # The reader gets the rest once each, in seq order (live, or repaired after the move).
    got: list[int] = []
    while len(got) < TOTAL - BEFORE_KILL - 1:
        got.append(reader.event("msg", room=room)["seq"])
    assert got == list(range(acked[f"mig-{BEFORE_KILL}"] + 1, TOTAL + 1))
    print(f"slot migration: {len(acked)} acknowledged, {len(stored)} stored, nothing missing")


def test_a_master_killed_mid_stream_loses_no_acknowledged_message_and_nodes_resubscribe(
    topology: RedisClusterSet | SentinelSet, cluster: suite.Cluster, clients: list[Client]
) -> None:
    room = "failover-room"
    sender, reader = _sender_and_reader(cluster, clients, room, "fo")
    if isinstance(topology, RedisClusterSet):
        master = topology.master_of(ClusterKeys().room_channel(room))
        heir = topology.replica_of(master)
    else:
        master, heir = topology.master, topology.replica

    def revive() -> None:
        """The operator's part: once the replica took over, the dead master comes back (as
        the new master's replica), so that a write can have a replica again."""
        topology.wait_master(heir)
        master.start()

    acked: dict[str, int] = {}
    refused = 0
    reviving = None
    for n in range(TOTAL):
        if n == BEFORE_KILL:
            master.kill()
            reviving = gevent.spawn(revive)
            # The link counts unhealthy at once (a subscription is gone): not ready.
            wait_until(lambda: cluster["B"].ready_status() == 503, what="B not ready")
        data, overloaded = _send_until_acked(sender, room, f"fo-{n}")
        acked[f"fo-{n}"] = data["seq"]
        refused += overloaded
    assert reviving is not None
    reviving.get(timeout=FAILOVER_TIMEOUT)
    for node in cluster.nodes.values():
        # As long as a failover may take: the breaker's cool-down, its trial, and the
        # listener's subscriptions on every shard again, on a machine busy with other tests.
        wait_until(
            lambda n=node: n.ready_status() == 200,
            timeout=FAILOVER_TIMEOUT,
            what=f"{node.name} ready again",
        )

    stored = suite.history(sender, room)
    cids = [m.get("cid") for m in stored]
    missing = sorted(set(acked) - set(cids))
    doubled = sorted({c for c in cids if cids.count(c) > 1})
    print(
        f"failover ({type(topology).__name__}): {len(acked)} acknowledged, {refused} answers"
        f" overloaded, {len(stored)} stored, {len(missing)} missing, {len(doubled)} doubled"
    )
    assert (missing, doubled) == ([], [])
    assert {m["cid"]: m["seq"] for m in stored} == acked

    # Ready means subscribed again: a typing event (ephemeral: nothing repairs it) from A
    # reaches B, whose subscription to the room lives on the new master.
    sender.ok("typing", room=room)
    assert reader.event("typing", room=room)["user"] == "fo-sender"
    # And every acknowledged message reached the reader once (live, or repaired after the gap).
    got: dict[str, int] = {}
    while len(got) < len(acked):
        event = reader.event("msg", room=room)
        assert event["cid"] not in got, f"{event['cid']} delivered twice"
        got[event["cid"]] = event["seq"]
    assert got == acked


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_a_whole_cluster_away_and_back_leaves_the_nodes_running_and_then_ready(
    topology: RedisClusterSet, cluster: suite.Cluster, clients: list[Client]
) -> None:
    """With no cluster node reachable, redis-py raises errors that are no RedisError (no node
    to read the slot map from): the nodes keep running, unready, and recover."""
    for server in topology.servers:
        server.kill()
    for node in cluster.nodes.values():
        wait_until(lambda n=node: n.breaker_state() == 2, what=f"{node.name}'s breaker open")
    for server in topology.servers:
        server.start()
    topology.wait_settled()
    for node in cluster.nodes.values():
        # As long as a failover may take: the breaker's cool-down, its trial, and the
        # listener's subscriptions on every shard again, on a machine busy with other tests.
        wait_until(
            lambda n=node: n.ready_status() == 200,
            timeout=FAILOVER_TIMEOUT,
            what=f"{node.name} ready again",
        )
        assert node.proc is not None and node.proc.poll() is None, f"{node.name} exited"
    sender, reader = _sender_and_reader(cluster, clients, "back-room", "back")
    # Restarted servers have no scripts: the first send may be answered overloaded (nothing
    # of it ran, and the scripts are loaded again), its resend is stored.
    sent, _overloaded = _send_until_acked(sender, "back-room", "back-1")
    assert reader.event("msg", room="back-room")["mid"] == sent["mid"]
