"""Moderation on the chat page, in a real headless Chromium against a real server process: a
moderator removes a message, mutes and kicks its author from the page, and the author's page
says each time what happened, by whom and why (docs/moderation.md)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorim.domain.apikeys import new_api_key
from tests.test_browser import (
    EXPECT_TIMEOUT_MS,
    ServerProcess,
    _ann_and_bob_in,
    _bodies,
    _join,
    _say,
)

pytestmark = pytest.mark.process  # Chromium and the server run as processes

KEY, LINE = new_api_key()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", tmp_path / "server.log", ("--api-keys", LINE))
    process.start()
    try:
        yield process
    finally:
        process.kill()


def set_role(server: ServerProcess, room: str, user: str, role: str) -> None:
    request = urllib.request.Request(
        f"{server.base}/api/v1/rooms/{room}/roles/{user}",
        data=json.dumps({"role": role}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_a_moderator_removes_mutes_and_kicks_from_the_page_and_the_user_is_told(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    room = "modroom"
    set_role(server, room, "ann", "moderator")
    errors: list[str] = []
    ann, bob = _ann_and_bob_in(browser, server.base, room, errors)
    reasons = iter(["rude", "cool off", "enough"])
    ann.on("dialog", lambda dialog: dialog.accept(next(reasons)))
    _say(bob, "rude words")
    _say(bob, "more words")
    _say(ann, "my own")
    bob_message = ann.get_by_test_id("message").filter(has=_bodies(ann, "rude words"))
    expect(bob_message).to_have_count(1)
    # Only other users' messages get the moderator's buttons, and only on a moderator's page.
    expect(ann.get_by_test_id("message").filter(has=_bodies(ann, "my own")).get_by_test_id(
        "moderate-kick")).to_have_count(0)  # fmt: skip
    expect(bob.get_by_test_id("message").filter(has=_bodies(bob, "my own"))).to_have_count(1)
    expect(bob.get_by_test_id("moderate-kick")).to_have_count(0)

    bob_message.get_by_test_id("moderate-delete").click()
    expect(bob.get_by_test_id("notice")).to_have_text(
        "Your message in modroom was deleted by ann: rude"
    )
    expect(bob.get_by_test_id("message-body").filter(has_text="Message deleted")).to_have_count(1)
    expect(_bodies(ann, "rude words")).to_have_count(0)

    other = ann.get_by_test_id("message").filter(has=_bodies(ann, "more words"))
    other.get_by_test_id("moderate-mute").click()
    expect(bob.get_by_test_id("notice")).to_contain_text("You were muted in modroom by ann until")
    expect(bob.get_by_test_id("notice")).to_contain_text(": cool off")
    _say(bob, "am I muted?")
    failed = bob.get_by_test_id("message").filter(has=_bodies(bob, "am I muted?"))
    expect(failed.get_by_test_id("msg-status")).to_have_attribute("data-status", "failed")
    expect(failed.get_by_test_id("msg-status")).to_have_attribute(
        "aria-label", re.compile("^Not sent: you are muted in room 'modroom' until ")
    )
    expect(_bodies(ann, "am I muted?")).to_have_count(0)

    other.get_by_test_id("moderate-kick").click()
    expect(bob.get_by_test_id("notice")).to_have_text(
        "You were removed from modroom by ann: enough"
    )
    expect(bob.locator(f'[data-testid="room-item"][data-room="{room}"]')).to_have_count(0)
    expect(ann.get_by_test_id("member")).to_have_count(1)
    # Kicked, not banned: bob may come back (still muted, as a kick lifts no mute).
    _join(bob, room)
    expect(bob.locator(f'[data-testid="room-item"][data-room="{room}"]')).to_have_count(1)
    expect(ann.get_by_test_id("member")).to_have_count(2)
    assert errors == []


def test_the_member_list_shows_roles_and_lets_a_moderator_unmute_ban_and_unban(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    room = "rosterroom"
    set_role(server, room, "ann", "moderator")
    errors: list[str] = []
    ann, bob = _ann_and_bob_in(browser, server.base, room, errors)
    ann_item = ann.locator('[data-testid="member"][data-user="ann"]')
    bob_item = ann.locator('[data-testid="member"][data-user="bob"]')
    expect(bob_item).to_have_count(1)
    expect(ann_item.get_by_test_id("member-role")).to_have_text("moderator")
    expect(bob.locator('[data-testid="member"][data-user="ann"]')).to_have_attribute(
        "data-role", "moderator"
    )
    # The buttons are for the moderator's page, beside other members only.
    expect(ann_item.get_by_test_id("moderate-ban")).to_have_count(0)
    expect(bob.get_by_test_id("moderate-ban")).to_have_count(0)
    expect(bob.get_by_test_id("moderate-unban")).to_have_count(0)

    answers = iter(["hush", "speak", "go", "bob", "welcome back"])
    ann.on("dialog", lambda dialog: dialog.accept(next(answers)))
    _say(bob, "noise")
    ann.get_by_test_id("message").filter(has=_bodies(ann, "noise")).get_by_test_id(
        "moderate-mute"
    ).click()
    expect(bob.get_by_test_id("notice")).to_contain_text("You were muted in rosterroom by ann")
    bob_item.get_by_test_id("moderate-unmute").click()
    expect(bob.get_by_test_id("notice")).to_have_text("You may write in rosterroom again: speak")
    expect(ann.get_by_test_id("notice")).to_have_text("bob may write in rosterroom again")
    _say(bob, "thanks")
    expect(_bodies(ann, "thanks")).to_have_count(1)

    bob_item.get_by_test_id("moderate-ban").click()
    expect(bob.get_by_test_id("notice")).to_have_text("You were banned from rosterroom by ann: go")
    expect(bob.locator(f'[data-testid="room-item"][data-room="{room}"]')).to_have_count(0)
    expect(ann.get_by_test_id("member")).to_have_count(1)
    _join(bob, room)
    expect(bob.get_by_test_id("notice")).to_contain_text("you are banned from room 'rosterroom'")
    expect(bob.locator(f'[data-testid="room-item"][data-room="{room}"]')).to_have_count(0)

    ann.get_by_test_id("moderate-unban").click()
    expect(bob.get_by_test_id("notice")).to_have_text("You may join rosterroom again: welcome back")
    expect(ann.get_by_test_id("notice")).to_have_text("bob may join rosterroom again")
    _join(bob, room)
    expect(bob.locator(f'[data-testid="room-item"][data-room="{room}"]')).to_have_count(1)
    expect(ann.get_by_test_id("member")).to_have_count(2)
    assert errors == []
