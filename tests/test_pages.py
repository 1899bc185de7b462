"""History pages: cut to their byte budget on the side away from the cursor, spliced into the
same reply a whole encoding would give, and one page per connection at a time."""

from __future__ import annotations

import msgpack
import pytest

from actorim.protocol.codec import Encoding, decode_frame, encode
from actorim.protocol.commands import reply_ok
from actorim.protocol.events import message_event
from actorim.protocol.wire import frame_for
from actorim.runtime.pages import PageTurns, build_page
from actorim.store.base import StoredMessage, room_conv


def stored(seq: int, body: object) -> StoredMessage:
    packed = msgpack.packb(body, use_bin_type=True)
    cid = f"c{seq}" if seq % 2 else None
    return StoredMessage(
        f"m{seq}", room_conv("r"), seq, 1000 + seq, "al", "text", packed, cid, "r", None
    )


def payload(frame: bytes) -> bytes:
    """The payload of one unmasked server frame (RFC 6455 §5.2)."""
    length = frame[1] & 0x7F
    offset = {126: 4, 127: 10}.get(length, 2)
    return frame[offset:]


BODIES = ["hi", {"k": [1, 2.5, None, True]}, b"\x00\xff", ["é", "🙂", '"quoted"'], 7]


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("more", [False, True])
def test_spliced_page_is_the_reply_a_whole_encoding_gives(encoding: Encoding, more: bool) -> None:
    messages = [stored(n + 1, body) for n, body in enumerate(BODIES)]
    page = build_page(9, messages, more, encoding=encoding, max_bytes=1 << 20, newest=True)
    whole = frame_for(
        reply_ok(9, {"messages": [message_event(m) for m in messages], "more": more}), encoding
    )
    assert page.frame == whole
    assert (page.count, page.more) == (len(messages), more)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_a_thread_page_is_the_reply_a_whole_encoding_gives_whatever_its_root_holds(
    encoding: Encoding,
) -> None:
    # A root whose body looks like the reply's own empty list of messages, and two like it.
    root = stored(1, {"messages": [], "more": {"messages": []}})
    replies = [stored(n + 2, body) for n, body in enumerate(BODIES)]
    page = build_page(
        4, replies, True, encoding=encoding, max_bytes=1 << 20, newest=False, root=root
    )
    data = {"messages": [message_event(m) for m in replies], "more": True}
    assert page.frame == frame_for(reply_ok(4, {**data, "root": message_event(root)}), encoding)
    assert (page.count, page.root) == (len(replies), root)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_empty_page_is_an_empty_list(encoding: Encoding) -> None:
    page = build_page(1, [], False, encoding=encoding, max_bytes=10, newest=False)
    assert decode_frame(payload(page.frame), encoding.binary)["data"] == {
        "messages": [],
        "more": False,
    }


@pytest.mark.parametrize(("newest", "kept"), [(True, [8, 9, 10]), (False, [1, 2, 3])])
def test_page_over_its_budget_keeps_the_side_of_the_cursor_and_says_more(
    newest: bool, kept: list[int]
) -> None:
    messages = [stored(seq, "x" * 100) for seq in range(1, 11)]
    # Exactly the three messages on the cursor's side fit the budget.
    budget = sum(len(encode(message_event(messages[seq - 1]), Encoding.JSON)) for seq in kept)
    page = build_page(1, messages, False, encoding=Encoding.JSON, max_bytes=budget, newest=newest)
    data = decode_frame(payload(page.frame), False)["data"]
    assert [m["seq"] for m in data["messages"]] == kept
    assert data["more"] is True and page.more and page.count == 3


def test_a_single_message_over_the_budget_is_still_sent() -> None:
    page = build_page(
        1, [stored(1, "x" * 500)], False, encoding=Encoding.MSGPACK, max_bytes=10, newest=True
    )
    data = decode_frame(payload(page.frame), True)["data"]
    assert [m["seq"] for m in data["messages"]] == [1] and data["more"] is False


def test_page_turns_go_one_at_a_time_in_arrival_order() -> None:
    turns: PageTurns[int] = PageTurns()
    assert [turns.arrive(n) for n in (1, 2, 3)] == [True, False, False]
    assert len(turns) == 2
    assert [turns.finish(), turns.finish(), turns.finish()] == [2, 3, None]
    assert turns.arrive(4) is True
