"""Webhooks over real HTTP: ``actorim serve`` processes post signed events from their durable
outbox to receivers the tests start (tests/webhook_receiver.py), retry with back-off, fill the
dead-letter queue, survive a kill -9, and deliver each event once across two nodes."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actorim.domain.auth import TokenAuthority
from actorim.domain.webhooks import RetryPolicy, endpoints_json, parse_endpoints
from tests.redis_server import RedisServer, find_redis_server
from tests.support import Client, ServerProcess, http_get, wait_until
from tests.test_api import LINE, api, error_of
from tests.test_cluster import NodeProcess, redis_url_of, start_nodes
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.process  # actorim serve (and redis-server) run as processes

SECRET = "webhooks-test-secret-0123456789abcdef0123456"
TOKENS = TokenAuthority(SECRET)
HOOK_SECRET = "whsec-test"
# Small back-off for the tests: retry n waits up to min(CAP, BASE * 2^(n-1)) seconds.
BASE, CAP, POLL = 0.2, 0.8, 0.05


def hooks(*receivers: Receiver, events: list[str] | None = None) -> str:
    endpoints = [
        {"url": r.url, "secret": r.secret, **({"events": events} if events else {})}
        for r in receivers
    ]
    return endpoints_json(parse_endpoints(endpoints))


def server(data_dir: Path, webhooks: str, *extra: str) -> ServerProcess:
    return ServerProcess(
        data_dir,
        secret=SECRET,
        args=(
            "--webhooks",
            webhooks,
            "--webhook-backoff-base",
            str(BASE),
            "--webhook-backoff-cap",
            str(CAP),
            "--webhook-poll",
            str(POLL),
            "--webhook-timeout",
            "2",
            "--webhook-lease",
            "5",
            "--api-keys",
            LINE,
            "--presence-grace",
            "0.1",
            *extra,
        ),
    )


@pytest.fixture
def receiver(cleanup: list[Any]) -> Callable[..., Receiver]:
    def start(answer: Callable[[dict[str, Any], int], int] | None = None) -> Receiver:
        made = Receiver(HOOK_SECRET, answer).start()
        cleanup.append(made)
        return made

    return start


def client(node: ServerProcess, user: str, cleanup: list[Any]) -> Client:
    made = Client(node.url, json_frames=True)
    cleanup.append(made)
    made.connect(TOKENS.mint(user))
    return made


def base_of(node: ServerProcess) -> str:
    return f"http://127.0.0.1:{node.port}"


def test_sends_edits_deletes_and_presence_arrive_signed_with_ids_and_payloads(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    messages, presence = receiver(), receiver()
    webhooks = json.dumps(
        [
            {"url": messages.url, "secret": HOOK_SECRET, "events": ["message.created",
             "message.edited", "message.deleted"]},
            {"url": presence.url, "secret": HOOK_SECRET, "events": ["user.online",
             "user.offline"]},
        ]
    )  # fmt: skip
    node = server(tmp_path, webhooks)
    cleanup.append(node)
    node.start()
    ann = client(node, "ann", cleanup)
    online = presence.wait_for(1, what="user.online")[0]
    assert online.event["type"] == "user.online" and online.event["data"]["user"] == "ann"
    ann.ok("join", room="lobby")
    sent = ann.ok("send", room="lobby", body={"text": "hi"}, cid="s1")
    ann.ok("edit", mid=sent["mid"], body={"text": "hi!"}, cid="e1")
    ann.ok("delete", mid=sent["mid"])
    arrivals = messages.wait_for(3, what="message events")
    assert all(a.signed and a.status == 200 for a in arrivals)
    # Deliveries run side by side: the order of arrival is not the order of the events, their
    # seq is (docs/webhooks.md).
    created, edited, deleted = sorted((a.event for a in arrivals), key=lambda e: e["data"]["seq"])
    assert [e["type"] for e in (created, edited, deleted)] == [
        "message.created",
        "message.edited",
        "message.deleted",
    ]
    assert created["id"] == "ev_" + sent["mid"] and created["attempt"] == 1
    assert created["data"] == {
        "mid": sent["mid"], "room": "lobby", "from": "ann", "seq": sent["seq"],
        "ts": created["data"]["ts"], "kind": "text", "body": {"text": "hi"}, "cid": "s1",
    }  # fmt: skip
    assert edited["data"]["mid"] == sent["mid"] and edited["data"]["body"] == {"text": "hi!"}
    assert deleted["data"]["mid"] == sent["mid"] and "body" not in deleted["data"]
    assert len({e["id"] for e in (created, edited, deleted)}) == 3
    ann.close()
    offline = presence.wait_for(2, what="user.offline")[1]
    assert offline.event["type"] == "user.offline" and offline.event["data"]["user"] == "ann"


def documented_verification() -> Callable[..., bool]:
    """The verification code of docs/webhooks.md, run as it is written there."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify_" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/webhooks.md", "exec"), namespace)
    return namespace["verify_webhook"]  # type: ignore[no-any-return]


def test_the_documented_verification_accepts_a_real_request_and_refuses_a_forged_one(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    verify_webhook = documented_verification()
    hook = receiver()
    node = server(tmp_path, hooks(hook))
    cleanup.append(node)
    node.start()
    status, _, _ = api(base_of(node), "POST", "/messages", {"room": "ops", "body": "signed"})
    assert status == 200
    [arrival] = hook.wait_for(1, what="the published message's event")
    assert arrival.signed and verify_webhook(HOOK_SECRET, arrival.header, arrival.body)
    assert not verify_webhook("another secret", arrival.header, arrival.body)
    assert not verify_webhook(
        HOOK_SECRET, arrival.header, arrival.body.replace(b"signed", b"forged")
    )
    stamp = int(arrival.header.split(",")[0].removeprefix("t="))
    assert not verify_webhook(HOOK_SECRET, arrival.header, arrival.body, now=stamp + 301)
    assert verify_webhook(HOOK_SECRET, arrival.header, arrival.body, now=stamp + 299)
    assert not verify_webhook(HOOK_SECRET, "v1=" + "0" * 64, arrival.body)


def test_a_receiver_that_fails_three_times_gets_the_event_once_with_retries_spaced_by_the_backoff(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    flaky = receiver(lambda event, nth: 500 if nth <= 3 else 200)
    node = server(tmp_path, hooks(flaky, events=["message.created"]))
    cleanup.append(node)
    node.start()
    ann = client(node, "ann", cleanup)
    ann.ok("join", room="lobby")
    sent = ann.ok("send", room="lobby", body="once", cid="o1")
    arrivals = flaky.wait_for(4, what="three failures and a success")
    assert [a.event["id"] for a in arrivals] == ["ev_" + sent["mid"]] * 4
    assert [a.event["attempt"] for a in arrivals] == [1, 2, 3, 4]
    assert [a.status for a in arrivals] == [500, 500, 500, 200]
    assert len(flaky.delivered()) == 1
    policy = RetryPolicy(base=BASE, cap=CAP)
    # Retry n starts within its back-off ceiling plus one poll (and the request's own time).
    slack = POLL + 0.25
    for n, (before, after) in enumerate(itertools.pairwise(arrivals), start=1):
        gap = after.at - before.at
        assert 0 <= gap <= policy.ceiling(n) + slack, (n, gap, policy.ceiling(n))
    # A barrier: a later event arrives after the first, and the first never came again.
    ann.ok("send", room="lobby", body="later", cid="o2")
    flaky.wait_for(8, what="the later event's four attempts")
    assert [a.event["data"]["body"] for a in flaky.arrivals].count("once") == 4

    def attempts() -> dict[str, float]:
        body = http_get(f"{base_of(node)}/metrics")[2].decode()
        found = re.findall(r'^actorim_webhook_attempts_total\{result="(\w+)"\} (\S+)$', body, re.M)
        return {result: float(count) for result, count in found}

    wait_until(lambda: attempts() == {"delivered": 2.0, "retry": 6.0}, what="the metrics")
    status, _, page = api(base_of(node), "GET", "/webhooks/dead")
    assert status == 200 and page == {"dead": [], "next": None}


def test_a_dead_receiver_fills_the_dead_letter_queue_while_chat_keeps_flowing(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    dead = receiver(lambda event, nth: 503)
    node = server(
        tmp_path,
        hooks(dead, events=["message.created"]),
        "--webhook-max-attempts",
        "3",
        "--webhook-breaker-failures",
        "100",
    )
    cleanup.append(node)
    node.start()
    ann, bob = client(node, "ann", cleanup), client(node, "bob", cleanup)
    ann.ok("join", room="lobby")
    bob.ok("join", room="lobby")
    mids = [ann.ok("send", room="lobby", body=f"doomed {n}", cid=f"d{n}")["mid"] for n in range(5)]
    # Meanwhile chat flows: bob's messages reach ann at once, each answered and delivered.
    started = time.monotonic()
    for n in range(20):
        bob.ok("send", room="lobby", body=f"chat {n}", cid=f"c{n}")
        assert ann.event("msg", body=f"chat {n}")["from"] == "bob"
    assert time.monotonic() - started < 5
    dead.wait_for(3 * 25, what="three attempts of every event")
    base = base_of(node)

    def listed() -> list[dict[str, Any]]:
        status, _, page = api(base, "GET", "/webhooks/dead?limit=100")
        assert status == 200
        return page["dead"]

    # The last burials are settled by the store just after their answers.
    wait_until(lambda: len(listed()) == 25, what="25 dead entries")
    entries = listed()
    assert len(entries) == 25
    assert {e["event"] for e in entries} >= {"ev_" + mid for mid in mids}
    assert all(e["attempts"] == 3 and e["error"] == "HTTP 503" for e in entries)
    assert all(e["endpoint"] == dead.url for e in entries)


def dead_page(base: str, query: str = "") -> dict[str, Any]:
    status, _, page = api(base, "GET", "/webhooks/dead" + query)
    assert status == 200
    return page  # type: ignore[no-any-return]


def test_dead_letters_are_listed_paged_retried_and_deleted_over_the_api_with_clear_errors(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    answers = {"status": 500}
    hook = receiver(lambda event, nth: answers["status"])
    node = server(tmp_path, hooks(hook), "--webhook-max-attempts", "1")
    cleanup.append(node)
    node.start()
    base = base_of(node)
    for n in range(3):
        status, _, _ = api(base, "POST", "/messages", {"room": "ops", "body": f"n{n}"})
        assert status == 200
    hook.wait_for(3, what="one failed attempt each")
    wait_until(lambda: len(dead_page(base)["dead"]) == 3, what="three dead entries")
    page = dead_page(base)
    assert sorted(e["data"]["body"] for e in page["dead"]) == ["n0", "n1", "n2"]
    first = dead_page(base, "?limit=2")
    assert len(first["dead"]) == 2 and first["next"] == first["dead"][1]["id"]
    rest = dead_page(base, f"?limit=2&after={first['next']}")
    assert [e["id"] for e in first["dead"] + rest["dead"]] == [e["id"] for e in page["dead"]]
    assert rest["next"] is None
    one, two, three = (e["id"] for e in page["dead"])

    answers["status"] = 200
    assert api(base, "POST", f"/webhooks/dead/{one}/retry")[::2] == (200, {"retried": one})
    arrivals = hook.wait_for(4, what="the retried event")
    assert arrivals[3].event["id"] == page["dead"][0]["event"]
    assert (arrivals[3].event["attempt"], arrivals[3].status) == (1, 200)
    wait_until(lambda: len(dead_page(base)["dead"]) == 2, what="the retried entry gone")

    assert api(base, "DELETE", f"/webhooks/dead/{two}")[::2] == (200, {"deleted": two})
    status, _, answer = api(base, "DELETE", f"/webhooks/dead/{two}")
    assert status == 404 and error_of(answer)[0] == "not_found" and two in error_of(answer)[1]
    status, _, answer = api(base, "POST", f"/webhooks/dead/{one}/retry")
    assert status == 404 and error_of(answer)[0] == "not_found"
    status, _, answer = api(base, "POST", f"/webhooks/dead/{three}/retry", {"now": True})
    assert (status, error_of(answer)) == (
        400,
        ("bad_request", "unknown field 'now': send no body, or {}"),
    )
    status, _, answer = api(base, "POST", f"/webhooks/dead/{three}/retry", raw=b"[1]")
    assert (status, error_of(answer)[0]) == (400, "bad_request")
    status, _, answer = api(base, "GET", "/webhooks/dead?limit=0")
    assert status == 400 and "limit" in error_of(answer)[1]
    status, _, answer = api(base, "GET", "/webhooks/dead?limit=ten")
    assert status == 400 and "limit" in error_of(answer)[1]
    status, _, answer = api(base, "GET", "/webhooks/dead?colour=red")
    assert status == 400 and "colour" in error_of(answer)[1]
    status, headers, answer = api(base, "PUT", "/webhooks/dead")
    assert (status, headers["allow"]) == (405, "GET")
    status, headers, answer = api(base, "GET", f"/webhooks/dead/{three}")
    assert (status, headers["allow"]) == (405, "DELETE")
    status, _, answer = api(base, "GET", "/webhooks/dead", key="not-a-key")
    assert status == 401 and error_of(answer)[0] == "unauthenticated"
    assert [e["id"] for e in dead_page(base)["dead"]] == [three]


def test_an_acknowledged_messages_event_survives_kill_9_and_the_restarted_node_delivers_it(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    hook = receiver()
    # The first run looks at its outbox only after a minute: nothing is delivered before the
    # kill, so every event must come from the outbox in the data directory.
    node = server(tmp_path, hooks(hook, events=["message.created"]), "--webhook-poll", "60")
    cleanup.append(node)
    node.start()
    ann = client(node, "ann", cleanup)
    ann.ok("join", room="lobby")
    mids = [ann.ok("send", room="lobby", body=f"kept {n}", cid=f"k{n}")["mid"] for n in range(3)]
    node.kill()
    assert hook.arrivals == []
    node.args = node.args[:-2]  # the test's short poll again
    node.start()
    arrivals = hook.wait_for(3, what="the events kept through the kill")
    assert sorted(a.event["id"] for a in arrivals) == sorted(f"ev_{m}" for m in mids)
    assert all(a.signed and a.status == 200 for a in arrivals)
    assert sorted(a.event["data"]["body"] for a in arrivals) == ["kept 0", "kept 1", "kept 2"]


def test_two_nodes_sharing_redis_deliver_each_event_once_and_take_over_a_dead_nodes_leases(
    tmp_path: Path, receiver: Callable[..., Receiver], cleanup: list[Any]
) -> None:
    hook = receiver()
    redis_server = RedisServer(tmp_path / "redis", binary=find_redis_server())
    redis_server.start()
    cleanup.append(redis_server)
    url = redis_url_of(redis_server)
    args = (
        "--api-keys", LINE,
        "--webhooks", hooks(hook, events=["message.created", "user.online"]),
        "--webhook-poll", str(POLL),
        "--webhook-backoff-base", str(BASE),
        "--webhook-backoff-cap", str(CAP),
        "--webhook-timeout", "2",
        "--webhook-lease", "4",
    )  # fmt: skip
    a, b = (NodeProcess(name, url, tmp_path, namespace="hooks", args=args) for name in "AB")
    cleanup.extend([_Killed(a), _Killed(b)])
    start_nodes([a, b])
    # Ann connects on both nodes: the cluster announces her online once, and every node hears
    # it; the event is kept once.
    for node in (a, b):
        ann, _ = node.client("ann")
        cleanup.append(ann)
    # Both nodes poll the one outbox: each event is delivered once, by one of them.
    sent = [
        api(node.http, "POST", "/messages", {"room": "both", "body": n})[2]["mid"]
        for n in range(20)
        for node in (a, b)
    ]
    hook.wait_for(len(sent) + 1, what="one delivery of each event")
    barrier = api(a.http, "POST", "/messages", {"room": "both", "body": "barrier"})[2]["mid"]
    hook.wait_for(len(sent) + 2, what="the barrier")
    arrivals = list(hook.arrivals)
    messages = [x for x in arrivals if x.event["type"] == "message.created"]
    assert sorted(x.event["id"] for x in messages) == sorted(f"ev_{m}" for m in [*sent, barrier])
    [online] = [x.event for x in arrivals if x.event["type"] == "user.online"]
    assert online["data"]["user"] == "ann"
    assert all(x.status == 200 and x.event["attempt"] == 1 for x in arrivals)

    # B is gone; A claims three events and dies while its requests hang: their leases run out
    # and B, back, delivers them.
    b.kill()
    hook.hold()
    held = [api(a.http, "POST", "/messages", {"room": "both", "body": f"h{n}"})[2]["mid"]
            for n in range(3)]  # fmt: skip
    hook.wait_for(len(arrivals) + 3, what="A's three hanging requests")
    a.kill()
    released = len(hook.arrivals)
    hook.release()
    b.spawn()
    b.wait_ready()
    held_ids = {f"ev_{m}" for m in held}
    wait_until(
        lambda: held_ids <= {x.event["id"] for x in hook.arrivals[released:]},
        timeout=30,
        what="B's deliveries of A's claims",
    )
    after = hook.arrivals[released:]
    # At least once: an event B had delivered but not yet marked done when it was killed comes
    # again; nothing else does.
    assert {x.event["id"] for x in after} <= held_ids | {x.event["id"] for x in arrivals}
    assert all(x.status == 200 for x in after)


class _Killed:
    """A node process stopped (SIGKILL) when the test ends."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node

    def stop(self) -> None:
        self.node.kill()
