"""The server API (``/api/v1``) over real HTTP against ``actorim serve`` processes.

Every answer a test gets is checked against the OpenAPI document's schema for its endpoint
and status (``api``), so the document is the contract the live API keeps; docs/api.md's
examples are checked against the same document.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec

from actorim.domain.apikeys import ApiKeys, hash_line, new_api_key
from actorim.domain.auth import TokenAuthority
from actorim.web.openapi import openapi_document
from tests.redis_server import RedisServer, find_redis_server
from tests.support import Client, ServerProcess
from tests.test_cluster import NodeProcess, redis_url_of, start_nodes

pytestmark = pytest.mark.process  # actorim serve (and redis-server) run as processes

SECRET = "api-test-secret-0123456789abcdef0123456789"
TOKENS = TokenAuthority(SECRET)
KEY, LINE = new_api_key()
# A second key, configured beside the first: a key is rotated by configuring both for a while.
ROTATED_KEY, ROTATED_LINE = new_api_key()
DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"
DOCUMENT = openapi_document()


# -- calling the API, every answer held to the OpenAPI document --------------------------------


def _response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    template = path_template(path)
    operation = DOCUMENT["paths"][template][method.lower()]
    response = operation["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return {**schema, "components": DOCUMENT["components"]}


def path_template(path: str) -> str:
    """The OpenAPI path template ``path`` matches."""
    template = re.sub(r"^/users/[^/]+/", "/users/{user}/", path)
    template = re.sub(r"^/webhooks/dead/[^/]+", "/webhooks/dead/{id}", template)
    template = re.sub(r"^/rooms/[^/]+/roles/[^/]+$", "/rooms/{room}/roles/{user}", template)
    template = re.sub(r"^/rooms/[^/]+/(moderation|audit)$", r"/rooms/{room}/\1", template)
    template = re.sub(r"^/rooms/[^/]+/members/[^/]+$", "/rooms/{room}/members/{user}", template)
    return re.sub(r"^/rooms/[^/]+(/members)?$", r"/rooms/{room}\1", template)


def _check(schema: dict[str, Any], instance: Any) -> None:
    jsonschema.Draft202012Validator(schema).validate(instance)


def api(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request to ``base + /api/v1 + path``: status, headers (lower-case), JSON answer;
    the answer is validated against the document's schema for that path and status."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, "/api/v1" + path, body=data, headers=sent)
        response = conn.getresponse()
        answer = json.loads(response.read())
        found = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    assert found["content-type"] == "application/json"
    if response.status >= 400:
        _check(DOCUMENT["components"]["schemas"]["Error"], answer)
    else:
        _check(_response_schema(method, path.partition("?")[0], response.status), answer)
    return response.status, found, answer


def error_of(answer: dict[str, Any]) -> tuple[str, str]:
    return answer["error"]["code"], answer["error"]["message"]


# -- nodes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One node with two keys and a rate limit no test here reaches."""
    server = ServerProcess(
        tmp_path_factory.mktemp("api-node"),
        secret=SECRET,
        args=(
            "--api-keys",
            f"{LINE},{ROTATED_LINE}",
            "--api-rate",
            "1000",
            "--api-burst",
            "1000",
            "--api-max-body",
            "2048",
            "--presence-grace",
            "0.2",
        ),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connect(clients: list[Client]) -> Callable[..., Client]:
    def open_one(url: str, user: str, *, token: str | None = None) -> Client:
        client = Client(url, json_frames=True)
        clients.append(client)
        client.session = client.connect(token or TOKENS.mint(user))["session"]  # type: ignore[attr-defined]
        return client

    return open_one


def base_of(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


def room_count(base: str, room: str) -> int:
    status, _, page = api(base, "GET", f"/history?room={room}&limit=100")
    assert status == 200
    return len(page["messages"])


# -- the document --------------------------------------------------------------------------------


def test_the_openapi_document_is_valid_and_served_as_it_is(node: ServerProcess) -> None:
    validate_spec(openapi_document())
    status, _, served = api(base_of(node), "GET", "/openapi.json")
    assert status == 200 and served == openapi_document()


def test_every_example_in_the_api_docs_fits_the_openapi_document() -> None:
    text = DOCS.read_text()
    examples = re.findall(
        r"```http\n(GET|POST|PATCH|PUT|DELETE) /api/v1(\S+)\n(?:[^\n]+\n)*?\n(.*?)```\n\n"
        r"Answer `(\d+)`:\n\n```json\n(.*?)```",
        text,
        re.S,
    )
    seen = set()
    for method, target, body, status, answer in examples:
        path = target.partition("?")[0]
        template = path_template(path)
        operation = DOCUMENT["paths"][template][method.lower()]
        if body.strip() and int(status) < 400:  # an error's example shows a bad request
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            _check({**schema, "components": DOCUMENT["components"]}, json.loads(body))
        if int(status) >= 400:
            _check(DOCUMENT["components"]["schemas"]["Error"], json.loads(answer))
        else:
            _check(_response_schema(method, path, int(status)), json.loads(answer))
        seen.add((method.lower(), template))
    documented = {(m, p) for p, ops in DOCUMENT["paths"].items() for m in ops}
    assert documented <= seen, f"endpoints without an example in docs/api.md: {documented - seen}"


# -- keys ----------------------------------------------------------------------------------------


def test_a_missing_or_wrong_key_is_401_and_either_configured_key_works(node: ServerProcess) -> None:
    base = base_of(node)
    status, headers, answer = api(base, "GET", "/presence?users=ann", key=None)
    assert status == 401 and error_of(answer)[0] == "unauthenticated"
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, answer = api(base, "GET", "/presence?users=ann", key=KEY + "x")
    assert status == 401 and "not valid" in error_of(answer)[1]
    status, _, answer = api(
        base, "GET", "/presence?users=ann", key=None, headers={"Authorization": f"Basic {KEY}"}
    )
    assert status == 401
    # The key's hash is what is configured: presenting the hash line itself gets nowhere.
    assert api(base, "GET", "/presence?users=ann", key=LINE)[0] == 401
    assert api(base, "GET", "/presence?users=ann", key=KEY)[0] == 200
    assert api(base, "GET", "/presence?users=ann", key=ROTATED_KEY)[0] == 200


def test_a_key_is_kept_as_its_sha256_line_and_checked_against_every_configured_one() -> None:
    keys = ApiKeys.parse([LINE, ROTATED_LINE])
    assert keys.check(KEY) == LINE == hash_line(KEY)
    assert keys.check(ROTATED_KEY) == ROTATED_LINE
    assert keys.check("") is None and keys.check("x" * 10_000) is None
    with pytest.raises(ValueError, match="key 1 is not sha256"):
        ApiKeys.parse([KEY])


def test_unknown_paths_are_404_and_other_methods_405(node: ServerProcess) -> None:
    base = base_of(node)
    status, _, answer = api(base, "GET", "/nothing")
    assert status == 404 and error_of(answer)[0] == "not_found"
    status, headers, answer = api(base, "GET", "/messages")
    assert status == 405 and headers["allow"] == "POST"


def test_without_keys_the_api_is_off_and_answers_404(start_node: Callable[..., Any]) -> None:
    off = start_node()
    status, _, answer = api(off.http, "GET", "/openapi.json")
    assert status == 404 and error_of(answer)[0] == "not_found"
    assert api(off.http, "POST", "/messages", {"room": "r", "body": 1})[0] == 404


def test_each_key_is_rate_limited_with_retry_after_and_others_go_on(
    start_node: Callable[..., Any],
) -> None:
    limited = start_node(api_keys=(LINE, ROTATED_LINE), api_rate=0.2, api_burst=2)
    assert api(limited.http, "GET", "/presence?users=ann")[0] == 200
    assert api(limited.http, "GET", "/presence?users=ann")[0] == 200
    status, headers, answer = api(limited.http, "GET", "/presence?users=ann")
    assert status == 429 and error_of(answer)[0] == "rate_limited"
    assert 1 <= int(headers["retry-after"]) <= 5
    assert api(limited.http, "GET", "/presence?users=ann", key=ROTATED_KEY)[0] == 200


# -- publish -------------------------------------------------------------------------------------


def test_publish_to_a_room_as_the_system_reaches_members_and_an_id_makes_it_idempotent(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    bob = connect(node.url, "bob-pub")
    bob.ok("join", room="pub-room")
    request = {"room": "pub-room", "body": {"text": "deploy at 5"}, "id": "notice-1"}
    status, _, first = api(base, "POST", "/messages", request)
    assert status == 200 and first["from"] == "system" and first["id"] == "notice-1"
    event = bob.event("msg", room="pub-room")
    assert (event["mid"], event["seq"], event["body"]) == (
        first["mid"],
        first["seq"],
        {"text": "deploy at 5"},
    )
    status, _, again = api(base, "POST", "/messages", request)
    assert status == 200 and (again["mid"], again["seq"]) == (first["mid"], first["seq"])
    # Barrier: a later message on the same path; the retry delivered nothing before it.
    api(base, "POST", "/messages", {"room": "pub-room", "body": "after"})
    bob.event("msg", room="pub-room", body="after")
    assert room_count(base, "pub-room") == 2


def test_publish_to_a_user_as_a_user_is_a_direct_message(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    bob = connect(node.url, "bob-dm")
    status, _, sent = api(
        base, "POST", "/messages", {"to": "bob-dm", "from": "ann-dm", "body": "hi"}
    )
    assert status == 200 and sent["to"] == "bob-dm" and sent["from"] == "ann-dm"
    event = bob.event("msg", to="bob-dm")
    assert (event["from"], event["body"], event["mid"]) == ("ann-dm", "hi", sent["mid"])
    status, _, page = api(base, "GET", "/history?with=ann-dm,bob-dm")
    assert status == 200 and [m["mid"] for m in page["messages"]] == [sent["mid"]]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"room": "bad-body"}', "'body' is required"),
        (b'{"room": "bad-body", "to": "x", "body": 1}', "exactly one of"),
        (b'{"room": "bad-body", "body": 1, "colour": "red"}', "unknown field 'colour'"),
        (b'{"room": "bad-body", "body": 1, "id": 7}', "field 'id'"),
        (b'{"room": "bad-body", "body": 1, "from": "no spaces"}', "from must be"),
        (b'{"room": "", "body": 1}', "room"),
    ],
)
def test_a_bad_publish_is_400_with_a_clear_message_and_stores_nothing(
    node: ServerProcess, raw: bytes, says: str
) -> None:
    base = base_of(node)
    status, _, answer = api(base, "POST", "/messages", raw=raw)
    assert status == 400 and error_of(answer)[0] == "bad_request"
    assert says in error_of(answer)[1]
    assert room_count(base, "bad-body") == 0


def test_a_body_over_api_max_body_is_413_and_stores_nothing(node: ServerProcess) -> None:
    base = base_of(node)
    big = {"room": "big-room", "body": "x" * 3000}
    status, _, answer = api(base, "POST", "/messages", big)
    assert status == 413 and error_of(answer)[0] == "too_large"
    assert room_count(base, "big-room") == 0


# -- presence, sessions, disconnect -------------------------------------------------------------


def test_presence_gives_each_users_status(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    connect(node.url, "pres-on")
    status, _, answer = api(base, "GET", "/presence?users=pres-on,pres-off")
    assert status == 200
    assert answer["statuses"] == {"pres-on": "online", "pres-off": "offline"}
    status, _, answer = api(base, "GET", "/presence")
    assert status == 400 and "users" in error_of(answer)[1]
    many = ",".join(f"u{n}" for n in range(1001))
    assert api(base, "GET", f"/presence?users={many}")[0] == 400


def test_sessions_list_a_users_connections_and_disconnect_closes_one_with_its_code(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    first, second = connect(node.url, "sess-ann"), connect(node.url, "sess-ann")
    status, _, answer = api(base, "GET", "/users/sess-ann/sessions")
    assert status == 200 and len(answer["sessions"]) == 2
    assert {s["user"] for s in answer["sessions"]} == {"sess-ann"}
    target = answer["sessions"][0]["session"]
    status, _, answer = api(
        base, "POST", "/users/sess-ann/disconnect", {"code": 1000, "reason": "x"}
    )
    assert status == 400 and "4000-4999" in error_of(answer)[1]
    first.ok("ping")
    second.ok("ping")
    status, _, answer = api(
        base,
        "POST",
        "/users/sess-ann/disconnect",
        {"session": target, "code": 4321, "reason": "moved to a new device"},
    )
    assert status == 202 and answer["code"] == 4321
    closed = [c for c in (first, second) if c.session == target]  # type: ignore[attr-defined]
    assert len(closed) == 1
    shut = closed[0].wait_closed()
    assert (shut.code, shut.reason) == (4321, "moved to a new device")
    other = first if closed[0] is second else second
    other.ok("ping")
    # All sessions at once, with the default code.
    assert api(base, "POST", "/users/sess-ann/disconnect", {})[0] == 202
    assert other.wait_closed().code == 4000


# -- history and revocations --------------------------------------------------------------------


def test_history_pages_like_the_websocket_history(node: ServerProcess) -> None:
    base = base_of(node)
    seqs = [
        api(base, "POST", "/messages", {"room": "hist-room", "body": n})[2]["seq"] for n in range(3)
    ]
    status, _, page = api(base, "GET", "/history?room=hist-room&limit=2")
    assert status == 200 and page["more"] is True
    assert [m["seq"] for m in page["messages"]] == seqs[1:]
    status, _, page = api(base, "GET", f"/history?room=hist-room&before={seqs[1]}")
    assert [m["body"] for m in page["messages"]] == [0] and page["more"] is False
    for bad in ("limit=0", "limit=x", "before=-1", "colour=red", ""):
        query = f"room=hist-room&{bad}" if bad != "" else "with=only-one"
        assert api(base, "GET", f"/history?{query}")[0] == 400, bad


def test_revocations_by_jti_and_by_user_close_live_connections_4003(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    stolen = connect(node.url, "rev-ann", token=TOKENS.mint("rev-ann", token_id="stolen-1"))
    kept = connect(node.url, "rev-ann")
    status, _, answer = api(base, "POST", "/revocations", {"jti": "stolen-1"})
    assert status == 200 and answer == {"revoked": {"jti": "stolen-1"}}
    assert stolen.wait_closed().code == 4003
    kept.ok("ping")
    status, _, _ = api(base, "POST", "/revocations", {"user": "rev-ann", "before": time.time()})
    assert status == 200 and kept.wait_closed().code == 4003
    for bad in ({}, {"jti": "a", "user": "b"}, {"user": "rev-ann", "before": "yesterday"}):
        status, _, answer = api(base, "POST", "/revocations", bad)
        assert status == 400 and error_of(answer)[0] == "bad_request", bad


# -- two nodes, one Redis --------------------------------------------------------------------------


def test_on_two_nodes_publish_and_disconnect_through_one_reach_a_user_on_the_other(
    tmp_path: Path, connect: Callable[..., Client]
) -> None:
    redis_server = RedisServer(tmp_path / "redis", binary=find_redis_server())
    redis_server.start()
    url = redis_url_of(redis_server)
    args = ("--api-keys", LINE)
    a, b = (
        NodeProcess(name, url, tmp_path, namespace="api", args=args, secret=SECRET)
        for name in ("api-a", "api-b")
    )
    try:
        start_nodes([a, b])
        bob = connect(b.url, "cl-bob")
        bob.ok("join", room="cl-room")
        status, _, sent = api(a.http, "POST", "/messages", {"room": "cl-room", "body": "from A"})
        assert status == 200
        assert bob.event("msg", room="cl-room")["mid"] == sent["mid"]
        api(a.http, "POST", "/messages", {"to": "cl-bob", "body": "dm from A"})
        assert bob.event("msg", to="cl-bob")["body"] == "dm from A"
        status, _, answer = api(a.http, "GET", "/users/cl-bob/sessions")
        assert status == 200 and [s["node"] for s in answer["sessions"]] == ["api-b"]
        status, _, answer = api(a.http, "GET", "/presence?users=cl-bob")
        assert answer["statuses"] == {"cl-bob": "online"}
        status, _, _ = api(
            a.http, "POST", "/users/cl-bob/disconnect", {"code": 4100, "reason": "bye"}
        )
        assert status == 202
        shut = bob.wait_closed()
        assert (shut.code, shut.reason) == (4100, "bye")
    finally:
        a.kill()
        b.kill()
        redis_server.stop()


def test_the_embedding_node_offers_the_same_operations(start_node: Callable[..., Any]) -> None:
    running = start_node()
    node = running.node
    alice = running.client("emb-alice")
    stored = node.publish("hi", room="emb-room", sender="emb-bob", cid="c-1")
    assert node.publish("hi", room="emb-room", sender="emb-bob", cid="c-1").mid == stored.mid
    page = node.history(room="emb-room")
    assert [m["mid"] for m in page["messages"]] == [stored.mid] and page["more"] is False
    assert node.presence(["emb-alice", "emb-carol"]) == {
        "emb-alice": "online",
        "emb-carol": "offline",
    }
    [session] = node.sessions("emb-alice")
    with pytest.raises(ValueError, match="4000-4999"):
        node.disconnect("emb-alice", code=1001)
    alice.ok("ping")
    node.disconnect("emb-alice", session=session["session"], code=4200, reason="bye")
    closed = alice.wait_closed()
    assert (closed.code, closed.reason) == (4200, "bye")


def test_actorim_api_key_prints_a_key_and_the_hash_line_that_accepts_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "actorim", "api-key"], capture_output=True, text=True, check=True
    ).stdout
    key = re.search(r"^key: (\S+)$", out, re.M)
    line = re.search(r"^api_keys line: (\S+)$", out, re.M)
    assert key is not None and line is not None
    assert ApiKeys.parse([line.group(1)]).check(key.group(1)) == line.group(1)
