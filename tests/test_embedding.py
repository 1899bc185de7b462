"""Embedding a node in a Python program: start it, serve it, publish into it from Python."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gevent.pywsgi import WSGIServer

from actorim.config import Config
from actorim.node import Node
from actorim.store.base import StoredMessage
from actorim.web.websocket import WebSocketHandler
from tests.support import Client, http_get


class Embedder:
    """Nodes and clients a test made; everything is closed after the test."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.nodes: list[Node] = []
        self.servers: list[WSGIServer] = []
        self.clients: list[Client] = []

    def node(self, **settings: object) -> Node:
        # Development mode keeps its generated secret in the data directory.
        settings.setdefault("data_dir", str(self.data_dir))
        settings.setdefault("store", "memory")
        node = Node(Config(dev=True, **settings)).start()  # type: ignore[arg-type]
        self.nodes.append(node)
        return node

    def client(self, url: str, node: Node, user: str) -> Client:
        client = Client(url)
        self.clients.append(client)
        client.connect(node.token(user))
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers:
            server.stop(timeout=1)
        for node in self.nodes:
            node.stop(drain=False)


@pytest.fixture
def embed(tmp_path: Path) -> Iterator[Embedder]:
    embedder = Embedder(tmp_path)
    yield embedder
    embedder.close()


@pytest.fixture
def served(embed: Embedder) -> tuple[Node, Callable[[str], Client]]:
    """A node listening on a free port, and a way to connect users to it."""
    node = embed.node()
    host, port = node.listen("127.0.0.1", 0)
    url = f"ws://{host}:{port}/ws"
    return node, lambda user: embed.client(url, node, user)


def test_a_started_node_serves_clients_on_the_address_listen_returns(embed: Embedder) -> None:
    node = embed.node()
    host, port = node.listen("127.0.0.1", 0)
    assert host == "127.0.0.1" and port > 0
    alice = embed.client(f"ws://{host}:{port}/ws", node, "alice")
    assert alice.ok("join", room="lobby")["members"] == ["alice"]
    assert http_get(f"http://{host}:{port}/healthz")[0] == 200


def test_publish_to_a_room_reaches_its_members_and_returns_the_stored_message(
    served: tuple[Node, Callable[[str], Client]],
) -> None:
    node, connect = served
    alice, bob = connect("alice"), connect("bob")
    alice.ok("join", room="news")
    bob.ok("join", room="news")
    alice.ok("send", room="news", body="first")
    bob.event("msg")
    stored = node.publish({"headline": "embedded"}, room="news", kind="bulletin")
    assert isinstance(stored, StoredMessage)
    assert (stored.seq, stored.room, stored.sender) == (2, "news", "system")
    for member in (alice, bob):
        msg = member.event("msg")
        assert msg == {
            "t": "msg",
            "mid": stored.mid,
            "seq": 2,
            "room": "news",
            "from": "system",
            "kind": "bulletin",
            "body": {"headline": "embedded"},
            "ts": stored.ts,
        }


def test_publish_to_a_user_reaches_every_connection_of_that_user(
    served: tuple[Node, Callable[[str], Client]],
) -> None:
    node, connect = served
    bob1, bob2 = connect("bob"), connect("bob")
    stored = node.publish("your order shipped", to="bob", sender="shop", cid="order-7")
    assert (stored.to, stored.sender, stored.seq) == ("bob", "shop", 1)
    for connection in (bob1, bob2):
        msg = connection.event("msg")
        assert (msg["mid"], msg["to"], msg["from"], msg["body"], msg["cid"]) == (
            stored.mid,
            "bob",
            "shop",
            "your order shipped",
            "order-7",
        )


def test_publish_to_an_offline_user_is_delivered_when_they_connect(
    served: tuple[Node, Callable[[str], Client]],
) -> None:
    node, connect = served
    stored = node.publish({"n": 1}, to="carol")
    carol = connect("carol")
    assert carol.event("msg")["mid"] == stored.mid


def test_publish_to_a_room_nobody_is_in_is_kept_for_history(
    served: tuple[Node, Callable[[str], Client]],
) -> None:
    node, connect = served
    stored = node.publish("archived", room="empty")
    alice = connect("alice")
    assert alice.ok("join", room="empty")["seq"] == stored.seq == 1
    page = alice.ok("history", room="empty")
    assert [m["body"] for m in page["messages"]] == ["archived"]


def test_publish_needs_exactly_one_of_room_and_to(embed: Embedder) -> None:
    node = embed.node()
    with pytest.raises(ValueError, match="exactly one"):
        node.publish("x")
    with pytest.raises(ValueError, match="exactly one"):
        node.publish("x", room="lobby", to="bob")


def test_the_wsgi_app_can_be_mounted_in_your_own_gevent_server(embed: Embedder) -> None:
    node = embed.node()
    server = WSGIServer(("127.0.0.1", 0), node.wsgi_app, handler_class=WebSocketHandler, log=None)
    embed.servers.append(server)
    server.start()
    url = f"ws://127.0.0.1:{server.server_port}/ws"
    alice, bob = embed.client(url, node, "alice"), embed.client(url, node, "bob")
    alice.ok("join", room="lobby")
    bob.ok("join", room="lobby")
    alice.ok("send", room="lobby", body="through my own server")
    assert bob.event("msg")["body"] == "through my own server"
    node.publish("and from Python", room="lobby")
    assert alice.event("msg")["body"] == "and from Python"
    assert http_get(f"http://127.0.0.1:{server.server_port}/readyz")[0] == 200


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_each_registered_store_serves_a_node(embed: Embedder, store: str) -> None:
    node = embed.node(store=store)
    assert node.publish("hello", room="r").seq == 1
    assert node.publish("again", room="r").seq == 2


def test_a_store_no_adapter_is_registered_for_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"setting store \(--store / ACTORIM_STORE\) must be one of"
    ):
        Node(Config(dev=True, data_dir=str(tmp_path), store="postgres"))
