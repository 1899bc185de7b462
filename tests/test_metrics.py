"""What operators see at /metrics, /healthz and /readyz, against a real node."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.support import RunningNode, http_get, wait_until

StartNode = Callable[..., RunningNode]


def scrape(node: RunningNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = http_get(node.http + "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_connections_commands_deliveries_and_commits(start_node: StartNode) -> None:
    node = start_node(store="sqlite")
    alice, bob = node.client("alice"), node.client("bob")
    alice.ok("join", room="r")
    bob.ok("join", room="r")
    for i in range(3):
        alice.ok("send", room="r", body=i)
    for _ in range(3):
        bob.event("msg")
    alice.error("join", room="")
    samples = scrape(node)
    assert value(samples, "actorim_connections", phase="connected") == 2
    assert value(samples, "actorim_commands_total", command="send", result="ok") == 3
    assert value(samples, "actorim_commands_total", command="join", result="ok") == 2
    assert value(samples, "actorim_commands_total", command="join", result="bad_request") == 1
    assert value(samples, "actorim_messages_delivered_total") == 3
    assert value(samples, "actorim_delivery_latency_seconds_count") == 3
    assert value(samples, "actorim_store_commit_seconds_count") >= 1
    assert value(samples, "actorim_store_commit_messages_sum") == 3
    assert value(samples, "actorim_ready") == 1
    assert ("actorim_hub_blocked", ()) in samples


def test_metrics_count_restarts_rate_limit_hits_and_slow_consumer_closes(
    start_node: StartNode,
) -> None:
    node = start_node(fault_injection=True, rate=2, burst=2)
    mallory = node.client("mallory")
    assert mallory.error("debug.crash", what="connection")["code"] == "internal"
    codes = [mallory.request("ping")["ok"] for _ in range(4)]
    assert False in codes
    wait_until(
        lambda: value(scrape(node), "actorim_actor_restarts_total", kind="connection") == 1,
        what="the connection's restart to be counted",
    )
    samples = scrape(node)
    assert value(samples, "actorim_actor_crashes_total", kind="connection") == 1
    assert value(samples, "actorim_rate_limited_total") >= 1
    assert value(samples, "actorim_commands_total", command="ping", result="rate_limited") >= 1
    assert value(samples, "actorim_supervisor_escalations_total") == 0
    assert value(samples, "actorim_slow_consumer_closes_total") == 0


def test_readyz_follows_the_store_and_draining(start_node: StartNode) -> None:
    node = start_node()
    status, _, body = http_get(node.http + "/readyz")
    assert status == 200 and b'"ready": true' in body
    assert http_get(node.http + "/healthz")[0] == 200
    node.node.ctx.draining = True
    status, _, body = http_get(node.http + "/readyz")
    assert status == 503 and b"draining" in body
    assert value(scrape(node), "actorim_ready") == 0


def test_log_lines_carry_connection_user_and_room_fields_and_no_bodies() -> None:
    import json
    import logging

    from actorim.logs import HumanFormatter, JsonFormatter, context

    record = logging.LogRecord(
        "actorim.connection", logging.INFO, __file__, 1, "closing (%d)", (1001,), None
    )
    for key, val in context(conn=7, user="alice", room="lobby").items():
        setattr(record, key, val)
    assert HumanFormatter().format(record).endswith("closing (1001) conn=7 user=alice room=lobby")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "closing (1001)"
    assert (entry["conn"], entry["user"], entry["room"], entry["level"]) == (
        7,
        "alice",
        "lobby",
        "info",
    )
