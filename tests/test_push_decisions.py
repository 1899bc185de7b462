"""The decisions of offline push, fed values: who a message needs a push for, which window it
joins, when the push is due, whether it is still needed then, and the settings' checks
(``actorim.domain.push``; the same over real servers in tests/test_push.py)."""

from __future__ import annotations

import pytest

from actorim.config import Config
from actorim.domain.markers import Counts
from actorim.domain.messages import StoredMessage, dm_conv, room_conv
from actorim.domain.push import PushPolicy, pending_push, push_payload, push_recipients
from actorim.domain.webhooks import Endpoint

SECRET = "push-decisions-secret-0123456789abcdef0123"


def stored(
    *, sender: str = "al", room: str | None = None, to: str | None = None, **more: object
) -> StoredMessage:
    conv = room_conv(room) if room is not None else dm_conv(sender, to or "")
    return StoredMessage("m1", conv, 4, 10_500, sender, "text", b"", None, room, to, **more)  # type: ignore[arg-type]


def test_a_direct_message_or_a_mention_needs_a_push_never_for_its_sender_nor_for_a_change() -> None:
    assert push_recipients(stored(to="bo")) == ("bo",)
    assert push_recipients(stored(to="al")) == ()
    assert push_recipients(stored(room="lobby")) == ()
    assert push_recipients(stored(room="lobby", mentions=("bo", "al", "cy", "bo"))) == ("bo", "cy")
    assert push_recipients(stored(to="bo", target="m0")) == ()
    assert push_recipients(stored(to="bo", refused="unknown")) == ()


def test_messages_of_one_window_share_its_due_time_the_grace_after_it_ends() -> None:
    policy = PushPolicy(window_s=10.0, grace_s=5.0)
    assert {policy.due_of(ts) for ts in (10_000, 15_000, 19_999)} == {25_000}
    assert policy.due_of(20_000) == 35_000


def test_a_push_is_not_needed_once_its_conversation_is_read_or_its_room_left() -> None:
    dm = pending_push(stored(to="bo"), "bo", None, "sender")
    mention = pending_push(stored(room="lobby", mentions=("bo",)), "bo", None, "sender")
    unread_dm, read_dm = Counts(4, 0, 4, 0), Counts(4, 4, 0, 0)
    lobby, lobby_read = Counts(9, 0, 9, 2), Counts(9, 9, 0, 0)
    both = {dm_conv("al", "bo"): unread_dm, room_conv("lobby"): lobby}
    assert push_payload(dm, both, ["lobby"]) == {**dm, "count": 6, "badge": 13}
    assert push_payload(mention, both, ["lobby"]) == {**mention, "count": 6, "badge": 13}
    assert push_payload(dm, {dm_conv("al", "bo"): read_dm}, []) is None
    assert push_payload(mention, {room_conv("lobby"): lobby_read}, ["lobby"]) is None
    assert push_payload(mention, both, []) is None  # no longer a member


@pytest.mark.parametrize(
    ("preview", "fields"),
    [("none", {"mid", "seq", "ts"}), ("sender", {"mid", "seq", "ts", "from"}),
     ("full", {"mid", "seq", "ts", "from", "kind", "body"})],
)  # fmt: skip
def test_the_preview_keeps_only_what_it_allows(preview: str, fields: set[str]) -> None:
    pending = pending_push(stored(to="bo"), "bo", "hi", preview)  # type: ignore[arg-type]
    assert set(pending["message"]) == fields


def test_only_endpoints_that_name_push_needed_get_it() -> None:
    assert not Endpoint("http://h/in", "s").wants("push.needed")
    assert Endpoint("http://h/in", "s").wants("message.created")
    assert Endpoint("http://h/in", "s", ("push.needed",)).wants("push.needed")


def test_bad_push_settings_are_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="push_window"):
        Config(secret=SECRET, push_window=0)
    with pytest.raises(ValueError, match=r"push_preview .*none, sender, full"):
        Config(secret=SECRET, push_preview="everything")
