"""Offline push over real HTTP: ``actorim serve`` processes post ``push.needed`` to a receiver
the tests start (tests/webhook_receiver.py) for a user who stays offline past the presence
grace after a direct message or a mention: once per window, coalesced, with the preview the
settings ask for and the badge; none when the user comes back within the grace, on one node
or across two nodes sharing Redis; and the push survives a kill -9 of its node."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from actorim.domain.auth import TokenAuthority
from tests.redis_server import RedisServer, find_redis_server
from tests.support import Client, ServerProcess, http_get, wait_until
from tests.test_cluster import NodeProcess, redis_url_of, start_nodes
from tests.test_webhooks import documented_verification
from tests.webhook_receiver import Arrival, Receiver

pytestmark = pytest.mark.process  # actorim serve (and redis-server) run as processes

SECRET = "push-test-secret-0123456789abcdef0123456789ab"
TOKENS = TokenAuthority(SECRET)
HOOK_SECRET = "whsec-push"
# The push timing of these tests: windows of WINDOW seconds, decided GRACE after they end.
WINDOW, GRACE, POLL = 0.5, 0.3, 0.05


def push_hook(url: str) -> str:
    """The ``webhooks`` setting of one push gateway at ``url``."""
    return json.dumps([{"url": url, "secret": HOOK_SECRET, "events": ["push.needed"]}])


def push_args(webhooks: str, *extra: str) -> tuple[str, ...]:
    return (
        "--webhooks", webhooks,
        "--webhook-poll", str(POLL),
        "--webhook-backoff-base", "0.2",
        "--webhook-backoff-cap", "0.8",
        "--webhook-timeout", "2",
        "--webhook-lease", "5",
        "--presence-grace", str(GRACE),
        "--push-window", str(WINDOW),
        *extra,
    )  # fmt: skip


def server(data_dir: Path, receiver: Receiver, *extra: str) -> ServerProcess:
    return ServerProcess(data_dir, secret=SECRET, args=push_args(push_hook(receiver.url), *extra))


@pytest.fixture
def receiver(cleanup: list[Any]) -> Receiver:
    made = Receiver(HOOK_SECRET).start()
    cleanup.append(made)
    return made


def started(data_dir: Path, receiver: Receiver, cleanup: list[Any], *extra: str) -> ServerProcess:
    """A node posting pushes to ``receiver``, started, and stopped when the test ends."""
    node = server(data_dir, receiver, *extra)
    cleanup.append(node)
    node.start()
    return node


def client(url: str, user: str, cleanup: list[Any]) -> Client:
    made = Client(url, json_frames=True)
    cleanup.append(made)
    made.connect(TOKENS.mint(user))
    return made


def at_window_start() -> None:
    """Wait, if need be, for the start of the next push window, so that the sends that follow
    fall in one window (windows are cut on the clock the server and the test share)."""
    into = time.time() % WINDOW
    if into > WINDOW / 3:
        time.sleep(WINDOW - into + 0.01)


def dropped(*bases: str) -> float:
    """``push.needed`` deliveries found no longer needed, summed over the nodes' metrics."""
    total = 0.0
    for base in bases:
        body = http_get(f"{base}/metrics")[2].decode()
        found = re.search(r'^actorim_webhook_attempts_total\{result="dropped"\} (\S+)$', body, re.M)
        total += float(found.group(1)) if found else 0.0
    return total


def base(node: ServerProcess | NodeProcess) -> str:
    return f"http://127.0.0.1:{node.port}"


def pushes_for(arrivals: list[Arrival], user: str) -> list[dict[str, Any]]:
    return [a.event for a in arrivals if a.event["data"]["user"] == user]


def test_an_offline_user_gets_one_push_for_messages_of_one_window_with_the_latest_and_the_badge(
    tmp_path: Path, receiver: Receiver, cleanup: list[Any]
) -> None:
    node = started(tmp_path, receiver, cleanup)
    bob = client(node.url, "bob", cleanup)
    bob.ok("join", room="lobby")
    bob.close()
    ann, cat = client(node.url, "ann", cleanup), client(node.url, "cat", cleanup)
    cat.ok("join", room="lobby")
    cat.ok("send", room="lobby", body="no mention: unread, no push", cid="c0")
    at_window_start()
    sent_at = time.monotonic()
    sent = [ann.ok("send", to="bob", body=f"dm {n}", cid=f"a{n}") for n in range(4)]
    last = sent[-1]
    # One push per window the sends fell in: one, unless a slow machine took them over its end.
    windows = {m["ts"] // int(WINDOW * 1000) for m in sent}
    arrivals = receiver.wait_for(len(windows), what="bob's push")
    assert len(arrivals) == len(windows)
    for arrival in arrivals:
        push = arrival.event
        assert arrival.signed and push["type"] == "push.needed" and push["attempt"] == 1
        # Decided the grace after its window ended: never before the grace.
        assert arrival.at - sent_at >= GRACE
    push = arrivals[-1].event
    assert push["data"] == {
        "user": "bob",
        "conversation": {"with": "ann"},
        "message": {"mid": last["mid"], "seq": last["seq"], "ts": last["ts"], "from": "ann"},
        "count": 4,
        "badge": 5,
    }
    # A mention in a room bob belongs to is a push of its own window, carrying the room.
    at_window_start()
    said = cat.ok("send", room="lobby", body="look @bob", cid="c1")
    arrivals = receiver.wait_for(len(windows) + 1, what="the mention's push")
    mention = arrivals[-1].event
    assert mention["id"] != push["id"]
    assert mention["data"]["conversation"] == {"room": "lobby"}
    assert mention["data"]["message"]["mid"] == said["mid"]
    assert (mention["data"]["count"], mention["data"]["badge"]) == (5, 6)
    assert len(receiver.arrivals) == len(windows) + 1


def test_no_push_when_the_user_comes_back_within_the_grace_or_reads_the_conversation(
    tmp_path: Path, receiver: Receiver, cleanup: list[Any]
) -> None:
    node = started(tmp_path, receiver, cleanup)
    ann = client(node.url, "ann", cleanup)
    at_window_start()
    ann.ok("send", to="bob", body="are you there?", cid="b1")
    bob = client(node.url, "bob", cleanup)  # back within the grace, and stays
    dm = ann.ok("send", to="eve", body="read it on another device", cid="e1")
    eve = client(node.url, "eve", cleanup)  # reads it, and is gone again before the grace
    eve.ok("read", **{"with": "ann", "seq": dm["seq"]})
    eve.close()
    # A barrier: dan, offline, gets the push of a later window; bob's was decided before it.
    at_window_start()
    ann.ok("send", to="dan", body="barrier", cid="d1")
    arrivals = receiver.wait_for(1, what="dan's push")
    wait_until(lambda: dropped(base(node)) == 2, what="bob's and eve's pushes dropped")
    assert [a.event["data"]["user"] for a in arrivals] == ["dan"]
    bob.close()


def test_a_flood_of_direct_messages_makes_at_most_one_push_per_window(
    tmp_path: Path, receiver: Receiver, cleanup: list[Any]
) -> None:
    node = started(tmp_path, receiver, cleanup)
    ann = client(node.url, "ann", cleanup)
    sent = [ann.ok("send", to="bob", body=f"flood {n}", cid=f"f{n}") for n in range(150)]
    windows = sorted({m["ts"] // int(WINDOW * 1000) for m in sent})
    # A barrier: dan's push, of a later window than every one of bob's.
    time.sleep(max(0.0, (windows[-1] + 1) * WINDOW - time.time()) + 0.01)
    ann.ok("send", to="dan", body="barrier", cid="d1")
    arrivals = receiver.wait_for(len(windows) + 1, what="one push per window and the barrier")
    assert pushes_for(arrivals, "dan") and len(arrivals) == len(windows) + 1
    pushes = pushes_for(arrivals, "bob")
    assert sorted(p["data"]["message"]["ts"] // int(WINDOW * 1000) for p in pushes) == windows
    last = max(pushes, key=lambda p: p["data"]["message"]["ts"])
    assert last["data"]["message"]["mid"] == sent[-1]["mid"]
    assert last["data"]["count"] == last["data"]["badge"] == len(sent)


@pytest.mark.parametrize("preview", ["none", "full"])
def test_the_preview_setting_decides_what_a_push_shows_of_its_message(
    tmp_path: Path, receiver: Receiver, cleanup: list[Any], preview: str
) -> None:
    node = started(tmp_path, receiver, cleanup, "--push-preview", preview)
    ann = client(node.url, "ann", cleanup)
    sent = ann.ok("send", to="bob", body={"text": "secret plans"}, cid="p1")
    [arrival] = receiver.wait_for(1, what="bob's push")
    message = arrival.event["data"]["message"]
    base = {"mid": sent["mid"], "seq": sent["seq"], "ts": sent["ts"]}
    if preview == "none":
        assert message == base
    else:
        assert message == {**base, "from": "ann", "kind": "text", "body": {"text": "secret plans"}}


def test_a_pending_push_survives_kill_9_and_the_restarted_node_sends_it(
    tmp_path: Path, receiver: Receiver, cleanup: list[Any]
) -> None:
    node = started(tmp_path, receiver, cleanup)
    ann = client(node.url, "ann", cleanup)
    sent = ann.ok("send", to="bob", body="kept through the crash", cid="k1")
    node.kill()  # before the push was due: it is only in the data directory
    assert receiver.arrivals == []
    node.start()
    [arrival] = receiver.wait_for(1, what="the push kept through the kill")
    data = arrival.event["data"]
    assert data["user"] == "bob" and data["message"]["mid"] == sent["mid"]
    assert data["badge"] == 1


def test_two_nodes_push_a_user_offline_everywhere_and_not_one_online_on_the_other_node(
    tmp_path: Path, receiver: Receiver, cleanup: list[Any]
) -> None:
    redis_server = RedisServer(tmp_path / "redis", binary=find_redis_server())
    redis_server.start()
    cleanup.append(redis_server)
    url = redis_url_of(redis_server)
    args = push_args(push_hook(receiver.url))
    a, b = (
        NodeProcess(name, url, tmp_path, namespace="push", args=args, secret=SECRET)
        for name in "AB"
    )
    cleanup.extend([_Killed(a), _Killed(b)])
    start_nodes([a, b])
    ann = client(a.url, "ann", cleanup)
    bob = client(b.url, "bob", cleanup)  # online on the other node only
    to_bob = ann.ok("send", to="bob", body="you are online on B", cid="b1")
    to_dan = ann.ok("send", to="dan", body="you are offline everywhere", cid="d1")
    [arrival] = receiver.wait_for(1, what="dan's push")
    assert arrival.event["data"]["user"] == "dan"
    assert arrival.event["data"]["message"]["mid"] == to_dan["mid"]
    wait_until(lambda: dropped(base(a), base(b)) == 1, what="bob's push dropped")
    assert [a.event["data"]["user"] for a in receiver.arrivals] == ["dan"]
    assert bob.ok("history", **{"with": "ann"})["messages"][-1]["mid"] == to_bob["mid"]


def documented_gateway(secret: str, devices: Any, send: Any) -> Any:
    """The push gateway of docs/webhooks.md, run as it is written there (after the
    verification it calls)."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text()
    block = re.search(r"<!-- push-gateway -->\n```python\n(.*?)```", text, re.S)
    assert block is not None
    namespace: dict[str, Any] = {"verify_webhook": documented_verification()}
    exec(compile(block.group(1), "docs/webhooks.md", "exec"), namespace)
    return namespace["push_gateway"](secret, devices, send)


def test_the_documented_push_gateway_turns_a_real_push_into_fcm_apns_and_web_push_requests(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    subscription = {"endpoint": "https://push.example/wp/1", "keys": {"p256dh": "k", "auth": "a"}}
    devices = {"bob": [("fcm", "fcm-token"), ("apns", "apns-token"), ("webpush", subscription)]}
    sent: list[tuple[str, dict[str, str], dict[str, Any]]] = []
    all_sent = Event()

    def send(url: str, headers: dict[str, str], body: dict[str, Any]) -> int:
        sent.append((url, headers, body))
        if len(sent) == 3:
            all_sent.set()
        return 200

    app = documented_gateway(HOOK_SECRET, lambda user: devices.get(user, []), send)
    gateway = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    gateway.start()
    cleanup.append(gateway)
    url = f"http://127.0.0.1:{gateway.server_port}/push"
    args = push_args(push_hook(url), "--push-preview", "full")
    node = ServerProcess(tmp_path, secret=SECRET, args=args)
    cleanup.append(node)
    node.start()
    ann = client(node.url, "ann", cleanup)
    at_window_start()
    ann.ok("send", to="bob", body={"text": "lunch?"}, cid="g1")
    last = ann.ok("send", to="bob", body={"text": "at noon"}, cid="g2")
    assert all_sent.wait(timeout=20), sent
    (fcm_url, _, fcm), (apns_url, apns_headers, apns), (web_url, web_headers, web) = sent
    assert fcm_url == "https://fcm.googleapis.com/v1/projects/my-firebase-project/messages:send"
    assert fcm["message"]["token"] == "fcm-token"
    assert fcm["message"]["notification"] == {"title": "ann", "body": "at noon (+1 more)"}
    assert fcm["message"]["data"]["mid"] == last["mid"]
    assert apns_url == "https://api.push.apple.com/3/device/apns-token"
    assert apns_headers["apns-push-type"] == "alert" and apns["aps"]["badge"] == 2
    assert web_url == subscription["endpoint"] and web_headers["TTL"] == "3600"
    assert (web["title"], web["body"], web["badge"]) == ("ann", "at noon (+1 more)", 2)


class _Killed:
    """A node process stopped (SIGKILL) when the test ends."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node

    def stop(self) -> None:
        self.node.kill()
