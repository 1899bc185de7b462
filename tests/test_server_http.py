"""Plain HTTP on the node's port (health, readiness, development tokens) and the handshake."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from pathlib import Path

import gevent
import pytest

from tests.support import (
    RunningNode,
    ServerProcess,
    handshake_status,
    http_get,
    start_on_a_picked_port,
)

SECRET = "http-test-secret-0123456789abcdef0123456789"


def test_healthz_says_the_process_is_alive(server: RunningNode) -> None:
    status, headers, body = http_get(server.http + "/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "alive"}


def test_readyz_says_ready_while_serving(server: RunningNode) -> None:
    status, _headers, body = http_get(server.http + "/readyz")
    assert status == 200
    assert json.loads(body)["ready"] is True


def test_readyz_answers_503_once_the_node_drains(server: RunningNode) -> None:
    # A keep-alive connection opened before the drain is served on, like a new one.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["ready"]) == (200, True)
        server.node.drain(0)
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        assert response.status == 503
        assert json.loads(response.read()) == {"ready": False, "reason": "draining"}
    finally:
        conn.close()


def test_a_drained_node_answers_health_checks_and_refuses_websockets_with_503(
    server: RunningNode,
) -> None:
    alice = server.client("alice")
    draining = gevent.spawn(server.node.drain, 0)
    assert alice.wait_closed().code == 1012
    draining.get(timeout=5)
    assert http_get(server.http + "/healthz")[0] == 200
    status, _headers, body = http_get(server.http + "/readyz")
    assert (status, json.loads(body)) == (503, {"ready": False, "reason": "draining"})
    assert handshake_status(server.url) == 503


def test_dev_token_mints_a_token_that_connects(server: RunningNode) -> None:
    status, headers, body = http_get(server.http + "/dev/token?user=alice")
    assert status == 200
    assert headers["cache-control"] == "no-store"
    answer = json.loads(body)
    assert answer["user"] == "alice"
    assert server.client().connect(answer["token"])["user"] == "alice"


@pytest.mark.parametrize("query", ["", "?user=", "?user=no%20spaces", "?user=" + "x" * 129])
def test_dev_token_refuses_a_bad_user_with_400(server: RunningNode, query: str) -> None:
    status, _headers, body = http_get(server.http + "/dev/token" + query)
    assert status == 400
    assert "user" in json.loads(body)["error"]


def test_dev_token_is_not_found_outside_development_mode(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(dev=False, secret="x" * 40)
    status, _headers, _body = http_get(node.http + "/dev/token?user=alice")
    assert status == 404
    assert node.client("alice").ok("ping") == {}


def test_ws_without_an_upgrade_answers_426(server: RunningNode) -> None:
    status, headers, _body = http_get(server.http + "/ws")
    assert status == 426
    assert headers["upgrade"].lower() == "websocket"


def test_an_unknown_path_is_not_found(server: RunningNode) -> None:
    assert http_get(server.http + "/nope")[0] == 404
    assert http_get(server.http + "/healthz/extra")[0] == 404


def test_a_browser_origin_of_another_host_is_refused_with_403(server: RunningNode) -> None:
    assert handshake_status(server.url, origin="http://evil.example") == 403
    assert handshake_status(server.url, origin=f"http://localhost:{server.port}") == 403


def test_a_browser_origin_of_the_same_host_is_accepted(server: RunningNode) -> None:
    assert handshake_status(server.url, origin=f"http://127.0.0.1:{server.port}") == 101
    same_host = server.client(origin=f"http://127.0.0.1:{server.port}")
    assert same_host.connect(server.token("alice"))["user"] == "alice"


def test_outside_development_mode_an_origin_equal_to_host_is_refused(
    start_node: Callable[..., RunningNode],
) -> None:
    # DNS rebinding: the attacker's page reaches the node under the attacker's name, so the
    # browser's Origin and Host agree. Only configured origins count outside development mode.
    node = start_node(dev=False, secret=SECRET)
    assert handshake_status(node.url, origin=f"http://127.0.0.1:{node.port}") == 403
    assert handshake_status(node.url) == 101


def test_outside_development_mode_the_public_url_origin_is_accepted_and_no_other(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(dev=False, secret=SECRET, public_url="https://Chat.Example.com/app/")
    assert handshake_status(node.url, origin="https://chat.example.com") == 101
    assert handshake_status(node.url, origin="http://chat.example.com") == 403
    assert handshake_status(node.url, origin="https://chat.example.com:8443") == 403
    assert handshake_status(node.url, origin=f"http://127.0.0.1:{node.port}") == 403
    assert node.client("alice", origin="https://chat.example.com").ok("ping") == {}


@pytest.mark.process
def test_a_production_server_serves_its_page_and_accepts_its_websocket_at_the_public_url(
    tmp_path: Path,
) -> None:
    server = start_on_a_picked_port(
        lambda port: ServerProcess(
            tmp_path / "data",
            secret=SECRET,
            port=port,
            args=("--public-url", f"http://127.0.0.1:{port}"),
        )
    )
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert http_get(base + "/")[0] == 200
        assert handshake_status(server.url, origin=base) == 101
        assert handshake_status(server.url, origin=f"http://localhost:{server.port}") == 403
    finally:
        server.stop()


def test_a_client_without_an_origin_is_accepted(server: RunningNode) -> None:
    assert handshake_status(server.url) == 101


def test_an_allowed_origin_is_accepted_and_others_still_refused(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(allowed_origins=("https://app.example",))
    assert handshake_status(node.url, origin="https://app.example") == 101
    assert handshake_status(node.url, origin="https://other.example") == 403
    assert node.client("alice", origin="https://app.example").ok("ping") == {}


def test_a_wildcard_allowed_origin_accepts_any_origin(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(allowed_origins=("*",))
    assert handshake_status(node.url, origin="https://anywhere.example") == 101
