"""Command decoding and validation, and the shapes of replies and events."""

from __future__ import annotations

import dataclasses
import doctest
from typing import Any

import msgpack
import pytest

from actorim.protocol import requests
from actorim.protocol.codec import Encoding, decode_frame, encode
from actorim.protocol.commands import (
    COMMAND_NAMES,
    DEFAULT_LIMIT,
    MAX_SEQ,
    MAX_USERS,
    Ack,
    Command,
    Connect,
    Conversations,
    DebugCrash,
    Delete,
    Edit,
    History,
    Join,
    Leave,
    Members,
    Moderate,
    NotACommand,
    Ping,
    Presence,
    React,
    Read,
    Refresh,
    Rooms,
    RoomUpdate,
    Send,
    Thread,
    Typing,
    Unread,
    Unwatch,
    Watch,
    decode_command,
    error_event,
    reply_error,
    reply_ok,
)
from actorim.protocol.errors import CommandError, ErrorCode


def _from_json(text: str, *, max_limit: int = 100) -> Command:
    return decode_command(decode_frame(text.encode("utf-8"), binary=False), max_limit=max_limit)


def _from_msgpack(payload: bytes) -> Command:
    return decode_command(decode_frame(payload, binary=True))


def _bad_request(frame: Any, *, max_limit: int = 100) -> CommandError:
    with pytest.raises(CommandError) as caught:
        decode_command(frame, max_limit=max_limit)
    error = caught.value
    assert not isinstance(error, NotACommand)
    assert error.code is ErrorCode.BAD_REQUEST
    return error


# --- every command, with its defaults ---------------------------------------------------------

DEFAULTS: list[tuple[str, Command]] = [
    ('{"t":"connect","id":1,"token":"abc.def.ghi"}', Connect(1, "abc.def.ghi")),
    ('{"t":"join","id":2,"room":"lobby"}', Join(2, "lobby", since=None, epoch=None)),
    ('{"t":"leave","id":3,"room":"lobby"}', Leave(3, "lobby")),
    (
        '{"t":"send","id":4,"room":"lobby","body":"hi"}',
        Send(4, "hi", room="lobby", to=None, kind="text", cid=None),
    ),
    (
        '{"t":"send","id":5,"to":"bob","body":"hi"}',
        Send(5, "hi", room=None, to="bob", kind="text", cid=None),
    ),
    ('{"t":"presence","id":6,"users":["alice","bob"]}', Presence(6, ("alice", "bob"))),
    ('{"t":"watch","id":7,"users":["alice"]}', Watch(7, ("alice",))),
    ('{"t":"unwatch","id":8,"users":[]}', Unwatch(8, ())),
    ('{"t":"ping","id":9}', Ping(9)),
    ('{"t":"ack","id":10,"mid":"m-1"}', Ack(10, "m-1")),
    ('{"t":"read","id":11,"mid":"m-1"}', Read(11, "m-1")),
    (
        '{"t":"history","id":12,"room":"lobby"}',
        History(12, room="lobby", with_=None, before=None, after=None, limit=50),
    ),
    (
        '{"t":"history","id":13,"with":"bob"}',
        History(13, room=None, with_="bob", before=None, after=None, limit=50),
    ),
    ('{"t":"debug.crash","id":14,"what":"store"}', DebugCrash(14, "store", room=None)),
    ('{"t":"typing","id":15,"room":"lobby"}', Typing(15, room="lobby", to=None)),
    ('{"t":"typing","id":16,"to":"bob"}', Typing(16, room=None, to="bob")),
    ('{"t":"refresh","id":17,"token":"abc.def.ghi"}', Refresh(17, "abc.def.ghi")),
    ('{"t":"edit","id":19,"mid":"m-1","body":"hi!"}', Edit(19, "m-1", "hi!", cid=None)),
    ('{"t":"delete","id":20,"mid":"m-1","cid":"c"}', Delete(20, "m-1", cid="c")),
    ('{"t":"react","id":21,"mid":"m-1","key":"+1","on":false}', React(21, "m-1", "+1", False)),
    (
        '{"t":"send","id":22,"room":"lobby","body":"re","reply_to":"m-1"}',
        Send(22, "re", room="lobby", reply_to="m-1"),
    ),
    (
        '{"t":"thread","id":23,"mid":"m-1"}',
        Thread(23, "m-1", before=None, after=None, limit=50),
    ),
    ('{"t":"conversations","id":22}', Conversations(22, before=None, limit=None)),
    ('{"t":"members","id":23,"room":"lobby"}', Members(23, "lobby", cursor=None, limit=None)),
    (
        '{"t":"room.update","id":24,"room":"lobby","topic":""}',
        RoomUpdate(24, "lobby", title=None, topic=""),
    ),
    ('{"t":"rooms","id":25}', Rooms(25, query=None, cursor=None, limit=None)),
    (
        '{"t":"moderate","id":31,"room":"lobby","action":"mute","user":"bob","for":60}',
        Moderate(31, "lobby", "mute", user="bob", mid=None, reason="", for_s=60.0),
    ),
    (
        '{"t":"moderate","id":32,"room":"lobby","action":"delete","mid":"m-1","reason":"spam"}',
        Moderate(32, "lobby", "delete", user=None, mid="m-1", reason="spam", for_s=None),
    ),
    ('{"t":"read","id":26,"room":"lobby","seq":0}', Read(26, room="lobby", seq=0)),
    ('{"t":"read","id":27,"with":"bob","seq":7}', Read(27, with_="bob", seq=7)),
    ('{"t":"unread","id":28}', Unread(28, rooms=(), with_=())),
    (
        '{"t":"unread","id":29,"rooms":["a"],"with":["bob","cy"]}',
        Unread(29, rooms=("a",), with_=("bob", "cy")),
    ),
    (
        '{"t":"send","id":30,"room":"lobby","body":"hi","mentions":["bob"]}',
        Send(30, "hi", room="lobby", mentions=("bob",)),
    ),
]


@pytest.mark.parametrize(("text", "expected"), DEFAULTS, ids=[t for t, _ in DEFAULTS])
def test_every_command_decodes_from_json_with_its_defaults(text: str, expected: Command) -> None:
    assert _from_json(text) == expected


@pytest.mark.parametrize(("text", "expected"), DEFAULTS, ids=[t for t, _ in DEFAULTS])
def test_every_command_decodes_the_same_from_msgpack(text: str, expected: Command) -> None:
    frame = decode_frame(text.encode("utf-8"), binary=False)
    assert _from_msgpack(msgpack.packb(frame)) == expected


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"t": "room.update", "id": 1, "room": "lobby"}, "'title'"),
        ({"t": "room.update", "id": 1, "room": "lobby", "title": "x" * 101}, "'title'"),
        ({"t": "room.update", "id": 1, "room": "lobby", "topic": "x" * 501}, "'topic'"),
        ({"t": "rooms", "id": 1, "query": "x" * 101}, "'query'"),
        ({"t": "rooms", "id": 1, "limit": 0}, "'limit'"),
        ({"t": "members", "id": 1, "room": "lobby", "cursor": ""}, "'cursor'"),
        ({"t": "conversations", "id": 1, "before": 5}, "'before'"),
    ],
)
def test_membership_commands_refuse_bad_fields(frame: dict[str, Any], field: str) -> None:
    with pytest.raises(CommandError) as caught:
        decode_command(frame)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert field in caught.value.message


def test_every_command_name_has_a_test() -> None:
    assert {expected.t for _, expected in DEFAULTS} == COMMAND_NAMES


def test_ping_decodes_from_literal_msgpack() -> None:
    assert _from_msgpack(b"\x82\xa1t\xa4ping\xa2id\x01") == Ping(1)


def test_join_decodes_from_literal_msgpack_with_all_arguments() -> None:
    payload = b"\x85\xa1t\xa4join\xa2id\x02\xa4room\xa5lobby\xa5since\xcd\x01\x00\xa5epoch\xa2e1"
    assert _from_msgpack(payload) == Join(2, "lobby", since=256, epoch="e1")


def test_send_keeps_a_msgpack_bin_body_as_bytes() -> None:
    payload = b"\x84\xa1t\xa4send\xa2id\x03\xa2to\xa3bob\xa4body\xc4\x02\x00\xff"
    assert _from_msgpack(payload) == Send(3, b"\x00\xff", to="bob")


def test_send_keeps_a_json_bytes_body_as_bytes() -> None:
    command = _from_json('{"t":"send","id":3,"room":"r","body":{"$bytes":"AP8="}}')
    assert isinstance(command, Send)
    assert command.body == b"\x00\xff"


@pytest.mark.parametrize(
    "body", [None, 0, -5, 2.5, True, "text", ["a", 1], {"x": {"y": [1, 2]}}, {}, []]
)
def test_send_keeps_the_raw_body_of_any_type(body: Any) -> None:
    command = decode_command({"t": "send", "id": 1, "room": "r", "body": body})
    assert isinstance(command, Send)
    assert command.body == body
    assert type(command.body) is type(body)


def test_all_optional_arguments_are_read() -> None:
    assert _from_json(
        '{"t":"send","id":1,"room":"r","body":"b","kind":"image","cid":"c-1"}'
    ) == Send(1, "b", room="r", kind="image", cid="c-1")
    assert _from_json(
        '{"t":"history","id":2,"room":"r","before":900,"after":100,"limit":20}'
    ) == History(2, room="r", before=900, after=100, limit=20)
    assert _from_json('{"t":"debug.crash","id":3,"what":"room","room":"r"}') == DebugCrash(
        3, "room", room="r"
    )


def test_history_limit_defaults_to_50() -> None:
    command = _from_json('{"t":"history","id":1,"room":"r"}')
    assert isinstance(command, History)
    assert command.limit == DEFAULT_LIMIT == 50


def test_history_limit_defaults_to_a_lower_max_limit() -> None:
    command = _from_json('{"t":"history","id":1,"room":"r"}', max_limit=25)
    assert isinstance(command, History)
    assert command.limit == 25


def test_history_cursors_may_be_as_large_as_a_stored_seq() -> None:
    command = _from_json(f'{{"t":"history","id":1,"room":"r","before":{MAX_SEQ}}}')
    assert isinstance(command, History)
    assert command.before == MAX_SEQ == 2**63 - 1


def test_history_limit_may_equal_max_limit() -> None:
    command = _from_json('{"t":"history","id":1,"room":"r","limit":25}', max_limit=25)
    assert isinstance(command, History)
    assert command.limit == 25


def test_client_written_from_and_unknown_keys_are_ignored() -> None:
    command = _from_json('{"t":"send","id":1,"room":"r","body":"x","from":"mallory","zz":[1]}')
    assert command == Send(1, "x", room="r")


def test_null_optional_arguments_count_as_absent() -> None:
    assert _from_json('{"t":"send","id":1,"room":"r","to":null,"body":"x","kind":null}') == Send(
        1, "x", room="r"
    )
    assert _from_json('{"t":"join","id":2,"room":"r","since":null,"epoch":null}') == Join(2, "r")


def test_identifiers_accept_every_allowed_character_and_the_longest_length() -> None:
    name = "Az09_.:@-"
    longest = "a" * 128
    assert decode_command({"t": "join", "id": 1, "room": name}) == Join(1, name)
    assert decode_command({"t": "join", "id": 1, "room": longest}) == Join(1, longest)
    assert decode_command({"t": "ack", "id": 1, "mid": "m" * 64}) == Ack(1, "m" * 64)
    users = [f"u{i}" for i in range(MAX_USERS)]
    assert decode_command({"t": "watch", "id": 1, "users": users}) == Watch(1, tuple(users))


def test_commands_are_immutable_values() -> None:
    command = decode_command({"t": "join", "id": 1, "room": "r"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.room = "other"  # type: ignore[misc]
    assert command == Join(1, "r")
    assert hash(command) == hash(Join(1, "r"))


# --- bad fields: bad_request naming the field -------------------------------------------------

BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"t": "connect"}, "token"),
    ({"t": "connect", "token": 5}, "token"),
    ({"t": "connect", "token": ""}, "token"),
    ({"t": "connect", "token": "x" * 5000}, "token"),
    ({"t": "refresh"}, "token"),
    ({"t": "refresh", "token": 5}, "token"),
    ({"t": "refresh", "token": "x" * 5000}, "token"),
    ({"t": "join"}, "room"),
    ({"t": "join", "room": None}, "room"),
    ({"t": "join", "room": 5}, "room"),
    ({"t": "join", "room": ""}, "room"),
    ({"t": "join", "room": "a" * 129}, "room"),
    ({"t": "join", "room": "a room"}, "room"),
    ({"t": "join", "room": "salle-é"}, "room"),
    ({"t": "join", "room": "a/b"}, "room"),
    ({"t": "join", "room": "a\n"}, "room"),
    ({"t": "join", "room": b"lobby"}, "room"),
    ({"t": "join", "room": "r", "since": -1}, "since"),
    ({"t": "join", "room": "r", "since": "1"}, "since"),
    ({"t": "join", "room": "r", "since": True}, "since"),
    ({"t": "join", "room": "r", "since": 1.0}, "since"),
    ({"t": "join", "room": "r", "epoch": ""}, "epoch"),
    ({"t": "join", "room": "r", "epoch": 3}, "epoch"),
    ({"t": "join", "room": "r", "epoch": "e" * 65}, "epoch"),
    ({"t": "leave"}, "room"),
    ({"t": "leave", "room": "#general"}, "room"),
    ({"t": "send", "room": "r"}, "body"),
    ({"t": "send", "room": "bad room", "body": "x"}, "room"),
    ({"t": "send", "to": "", "body": "x"}, "to"),
    ({"t": "send", "to": ["bob"], "body": "x"}, "to"),
    ({"t": "send", "room": "r", "body": "x", "kind": ""}, "kind"),
    ({"t": "send", "room": "r", "body": "x", "kind": "k" * 33}, "kind"),
    ({"t": "send", "room": "r", "body": "x", "kind": 1}, "kind"),
    ({"t": "send", "room": "r", "body": "x", "cid": ""}, "cid"),
    ({"t": "send", "room": "r", "body": "x", "cid": "c" * 65}, "cid"),
    ({"t": "send", "room": "r", "body": "x", "cid": 42}, "cid"),
    ({"t": "presence"}, "users"),
    ({"t": "presence", "users": "alice"}, "users"),
    ({"t": "presence", "users": {"alice": 1}}, "users"),
    ({"t": "presence", "users": ["u"] * (MAX_USERS + 1)}, "users"),
    ({"t": "presence", "users": [5]}, "users[0]"),
    ({"t": "watch", "users": ["alice", "bad user"]}, "users[1]"),
    ({"t": "unwatch", "users": ["alice", "bob", ""]}, "users[2]"),
    ({"t": "ack"}, "mid"),
    ({"t": "ack", "mid": ""}, "mid"),
    ({"t": "ack", "mid": "m" * 65}, "mid"),
    ({"t": "read", "mid": 7}, "mid"),
    ({"t": "history", "room": "r", "limit": 0}, "limit"),
    ({"t": "history", "room": "r", "limit": 101}, "limit"),
    ({"t": "history", "room": "r", "limit": True}, "limit"),
    ({"t": "history", "room": "r", "limit": "10"}, "limit"),
    ({"t": "history", "room": "r", "before": -1}, "before"),
    ({"t": "history", "room": "r", "after": "x"}, "after"),
    ({"t": "history", "room": "r", "before": 2**63}, "before"),
    ({"t": "history", "room": "r", "after": 2**64 + 5}, "after"),
    ({"t": "join", "room": "r", "since": 2**63}, "since"),
    ({"t": "history", "with": "no way"}, "with"),
    ({"t": "typing", "room": "bad room"}, "room"),
    ({"t": "typing", "to": 5}, "to"),
    ({"t": "send", "room": "r", "body": 1, "reply_to": ""}, "reply_to"),
    ({"t": "send", "to": "bob", "body": 1, "reply_to": 7}, "reply_to"),
    ({"t": "send", "room": "r", "body": 1, "reply_to": "m" * 65}, "reply_to"),
    ({"t": "thread"}, "mid"),
    ({"t": "thread", "mid": ["m"]}, "mid"),
    ({"t": "thread", "mid": "m", "limit": 101}, "limit"),
    ({"t": "thread", "mid": "m", "before": -1}, "before"),
    ({"t": "thread", "mid": "m", "after": 2**63}, "after"),
    ({"t": "debug.crash"}, "what"),
    ({"t": "debug.crash", "what": "everything"}, "what"),
    ({"t": "debug.crash", "what": ["room"]}, "what"),
    ({"t": "debug.crash", "what": "room", "room": "bad room"}, "room"),
]


@pytest.mark.parametrize(
    ("fields", "field"),
    BAD_FIELDS,
    ids=[f"{f['t']}-{name}-{i}" for i, (f, name) in enumerate(BAD_FIELDS)],
)
def test_bad_field_is_a_bad_request_naming_the_field(fields: dict[str, Any], field: str) -> None:
    error = _bad_request({"id": 1, **fields})
    assert f"'{field}'" in error.message


def test_bad_room_message_says_what_a_room_name_must_be() -> None:
    error = _bad_request({"t": "join", "id": 1, "room": ""})
    assert error.message == "field 'room' must be a non-empty string of at most 128 characters"
    error = _bad_request({"t": "join", "id": 1, "room": "a b"})
    assert error.message == "field 'room' may contain only letters, digits and _ . : @ -"


def test_history_limit_is_bounded_by_the_decoders_max_limit() -> None:
    error = _bad_request({"t": "history", "id": 1, "room": "r", "limit": 26}, max_limit=25)
    assert error.message == "field 'limit' must be an integer from 1 to 25"


@pytest.mark.parametrize(
    ("t", "first", "second"),
    [("send", "room", "to"), ("history", "room", "with"), ("typing", "room", "to")],
)
def test_target_fields_are_exactly_one(t: str, first: str, second: str) -> None:
    both = _bad_request({"t": t, "id": 1, first: "r", second: "bob", "body": "x"})
    neither = _bad_request({"t": t, "id": 1, "body": "x"})
    for error in (both, neither):
        assert f"'{first}'" in error.message
        assert f"'{second}'" in error.message


# --- frames that are not commands -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[1,2]", id="list"),
        pytest.param(b'"ping"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"t":"ping"}', id="no-id"),
        pytest.param(b'{"t":"ping","id":"1"}', id="string-id"),
        pytest.param(b'{"t":"ping","id":1.0}', id="float-id"),
        pytest.param(b'{"t":"ping","id":true}', id="bool-id"),
        pytest.param(b'{"t":"ping","id":null}', id="null-id"),
    ],
)
def test_frame_without_a_map_or_integer_id_is_not_a_command(payload: bytes) -> None:
    with pytest.raises(NotACommand) as caught:
        decode_command(decode_frame(payload, binary=False))
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.message


def test_msgpack_bool_id_is_not_a_command() -> None:
    with pytest.raises(NotACommand, match="'id'"):
        _from_msgpack(b"\x82\xa1t\xa4ping\xa2id\xc3")


def test_unknown_t_is_a_bad_request_naming_t_and_the_value() -> None:
    error = _bad_request({"t": "dance", "id": 4})
    assert "'t'" in error.message
    assert "'dance'" in error.message


def test_unknown_t_is_quoted_back_at_most_in_part() -> None:
    error = _bad_request({"t": "x" * 10_000, "id": 4})
    assert "'t'" in error.message
    assert len(error.message) < 120


@pytest.mark.parametrize("t", [None, 5, ["ping"], b"ping"])
def test_missing_or_non_string_t_is_a_bad_request_naming_t(t: Any) -> None:
    frame = {"id": 1} if t is None else {"t": t, "id": 1}
    error = _bad_request(frame)
    assert "'t'" in error.message


# --- replies and events -----------------------------------------------------------------------


def test_reply_ok_carries_the_id_and_data() -> None:
    assert reply_ok(5, {"seq": 1}) == {"t": "reply", "id": 5, "ok": True, "data": {"seq": 1}}
    assert reply_ok(6) == {"t": "reply", "id": 6, "ok": True, "data": {}}


def test_reply_error_carries_the_code_and_message() -> None:
    assert reply_error(5, ErrorCode.FORBIDDEN, "not a member of 'r'") == {
        "t": "reply",
        "id": 5,
        "ok": False,
        "error": {"code": "forbidden", "message": "not a member of 'r'"},
    }


def test_command_error_becomes_an_error_reply() -> None:
    error = _bad_request({"t": "join", "id": 9})
    reply = reply_error(9, error.code, error.message)
    assert encode(reply, Encoding.JSON) == (
        b'{"t":"reply","id":9,"ok":false,'
        b'"error":{"code":"bad_request","message":"field \'room\' is required"}}'
    )


def test_not_a_command_becomes_an_error_event() -> None:
    with pytest.raises(NotACommand) as caught:
        decode_command([1])
    frame = error_event(caught.value.code, caught.value.message)
    assert frame["t"] == "error"
    assert frame["error"]["code"] == "bad_request"
    assert encode(frame, Encoding.MSGPACK).startswith(b"\x82\xa1t\xa5error\xa5error\x82")


def test_error_codes_are_the_documented_vocabulary() -> None:
    assert {code.value for code in ErrorCode} == {
        "bad_request",
        "unauthenticated",
        "forbidden",
        "not_found",
        "rate_limited",
        "too_many_reactions",
        "too_many_rooms",
        "too_many_mentions",
        "banned",
        "muted",
        "not_moderator",
        "outranked",
        "overloaded",
        "internal",
    }


def test_command_error_carries_code_and_payload() -> None:
    error = CommandError(ErrorCode.RATE_LIMITED, "slow down")
    assert error.code is ErrorCode.RATE_LIMITED
    assert error.message == "slow down"
    assert error.payload() == {"code": "rate_limited", "message": "slow down"}


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        pytest.param({"t": "edit", "id": 1, "mid": "m"}, "body", id="edit without body"),
        pytest.param({"t": "edit", "id": 1, "body": "x"}, "mid", id="edit without mid"),
        pytest.param({"t": "delete", "id": 1}, "mid", id="delete without mid"),
        pytest.param({"t": "delete", "id": 1, "mid": "m" * 65}, "mid", id="mid too long"),
        pytest.param({"t": "edit", "id": 1, "mid": "m", "body": 1, "cid": 5}, "cid", id="cid"),
        pytest.param({"t": "react", "id": 1, "key": "+1", "on": True}, "mid", id="react mid"),
        pytest.param({"t": "react", "id": 1, "mid": "m", "on": True}, "key", id="react no key"),
        pytest.param(
            {"t": "react", "id": 1, "mid": "m", "key": "🎉" * 9, "on": True}, "key", id="33 bytes"
        ),
        pytest.param({"t": "react", "id": 1, "mid": "m", "key": "x"}, "on", id="react no on"),
        pytest.param(
            {"t": "react", "id": 1, "mid": "m", "key": "x", "on": "yes"}, "on", id="on not bool"
        ),
    ],
)
def test_edit_and_delete_name_the_field_at_fault(frame: dict[str, Any], field: str) -> None:
    assert f"'{field}'" in _bad_request(frame).message


def test_the_application_request_checks_say_what_the_websocket_says() -> None:
    """The server API, Node and the Publisher check their arguments with these (doctests too)."""
    assert doctest.testmod(requests).failed == 0
    with pytest.raises(requests.InvalidRequest) as raised:
        requests.room_name("no room!")
    with pytest.raises(CommandError) as websocket:
        decode_command({"t": "join", "id": 1, "room": "no room!"})
    assert raised.value.message == websocket.value.message
    assert requests.member_list(["al", "bo", "al"], 3) == ["al", "bo"]
    with pytest.raises(requests.InvalidRequest, match="at most 1 user ids"):
        requests.member_list(["al", "bo"], 1)
    with pytest.raises(requests.InvalidRequest, match="at most one of room and with"):
        requests.one_place("al", "lobby", "bo")
