"""The chat page while people look elsewhere and come back: the unread total in the tab's title,
desktop notifications (only after the button), the last conversation reopened after a reload,
presence greyed while the page is disconnected, badges from the connect reply's inbox, and the
keyboard (up-arrow edits one's last message, Escape closes the thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.page_support import dev_client
from tests.test_browser import (
    DESKTOP,
    EXPECT_TIMEOUT_MS,
    ServerProcess,
    _join,
    _open,
    _running,
    _say,
)

pytestmark = pytest.mark.process

# Records what the page asks of the browser's Notification API, and lets it through.
NOTIFICATIONS_SPY = """
window.asked = 0;
window.shown = [];
const Real = window.Notification;
const request = Real.requestPermission.bind(Real);
Real.requestPermission = (...args) => { window.asked += 1; return request(...args); };
window.Notification = class extends Real {
  constructor(title, options) {
    super(title, options);
    window.shown.push({ title, body: options.body, tag: options.tag });
  }
};
"""


# Small pages, so that the page's paging of the inbox and of member lists shows.
PAGE_ARGS = ("--inbox-limit", "2", "--member-list-limit", "3")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _running(tmp_path_factory.mktemp("everyday"), PAGE_ARGS)


def _page(browser: Any, base: str, user: str, errors: list[str], **context: Any) -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    page = browser.new_context(viewport=DESKTOP, **context).new_page()
    page.on("pageerror", lambda error: errors.append(f"{user}: {error}"))
    page.add_init_script(NOTIFICATIONS_SPY)
    page.goto(f"{base}/")
    page.get_by_test_id("signin-name").fill(user)
    page.get_by_test_id("signin-submit").click()
    return page


def test_title_counts_notifications_follow_the_button_and_a_reload_reopens_the_conversation(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, server.base, "nia", errors, permissions=["notifications"])
    _join(page, "quiet")
    _join(page, "lounge")
    button = page.get_by_test_id("notify-toggle")
    expect(button).to_have_text("Notify me")
    assert page.evaluate("() => window.asked") == 0, "the page asked for notifications on load"
    button.click()
    expect(button).to_have_text("Notifications on")
    expect(button).to_have_attribute("aria-pressed", "true")
    bob = dev_client(server, "obi", "quiet")
    bob.ok("send", to="nia", body="psst, a direct message")
    bob.ok("send", room="quiet", body="hey @nia look")
    bob.ok("send", room="quiet", body="no mention here")
    expect(page).to_have_title("(3) actorim chat")
    shown = page.evaluate("() => window.shown")
    assert shown == [
        {"title": "obi", "body": "psst, a direct message", "tag": "dm:obi"},
        {"title": "obi in # quiet", "body": "hey @nia look", "tag": "room:quiet"},
    ]
    # Reading the room takes its two off the total.
    _open(page, "room-item", "quiet")
    expect(page).to_have_title("(1) actorim chat")
    # After a reload the same conversation is open again.
    page.reload()
    expect(page.get_by_test_id("conv-title")).to_have_text("# quiet")
    expect(page.get_by_test_id("messages")).to_contain_text("no mention here")
    expect(page).to_have_title("(1) actorim chat")
    # Turned off, nothing more is shown.
    expect(button).to_have_text("Notifications on")
    button.click()
    expect(button).to_have_text("Notify me")
    bob.ok("send", to="nia", body="are you there?")
    expect(page).to_have_title("(2) actorim chat")
    assert page.evaluate("() => window.shown") == []
    bob.close()
    page.context.close()
    assert errors == []


def test_presence_dots_grey_while_the_page_is_disconnected(
    browser: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    own = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    own.start()
    try:
        page = _page(browser, own.base, "pia", errors)
        _join(page, "dots")
        quinn = dev_client(own, "quinn", "dots")
        member = page.locator('[data-testid="member"][data-user="quinn"]')
        expect(member).to_have_attribute("data-status", "online")
        # Asserted with a retry: the list is drawn again as presence and the roster arrive, and
        # a dot read once may be one already taken out of the page (no computed style at all).
        dot = member.locator(".dot")
        expect(dot).to_have_css("background-color", "rgb(31, 157, 85)")  # --online
        own.kill()
        expect(page.get_by_test_id("chat")).to_have_attribute("data-link", "down")
        # Still listed as online (the last word heard), but its dot is greyed (--offline).
        expect(member).to_have_attribute("data-status", "online")
        expect(dot).to_have_css("background-color", "rgb(179, 185, 196)")  # --offline
        quinn.close()
        page.context.close()
    finally:
        own.kill()


def test_badges_come_with_the_connect_reply_and_the_keyboard_edits_and_closes(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, server.base, "sol", errors)
    _join(page, "keys")
    expect(page.get_by_test_id("history-status")).to_have_text("No messages yet")
    page.context.close()
    rex = dev_client(server, "rex", "keys")
    rex.ok("send", room="keys", body="while you were away")
    rex.ok("send", room="keys", body="and again")
    # A new device: its rooms and their counts come from the connect reply alone.
    sent: list[str] = []
    fresh = browser.new_context(viewport=DESKTOP).new_page()
    fresh.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(str(frame))))
    fresh.goto(f"{server.base}/")
    fresh.get_by_test_id("signin-name").fill("sol")
    fresh.get_by_test_id("signin-submit").click()
    badge = fresh.locator('[data-testid="room-item"][data-room="keys"] [data-testid="unread"]')
    expect(badge).to_have_text("2")
    assert not any('"t":"unread"' in frame for frame in sent), sent
    _open(fresh, "room-item", "keys")
    _say(fresh, "first try")
    _say(fresh, "secnd try")
    mine = fresh.locator('[data-testid="message"][data-mid][data-from="sol"]')
    expect(mine).to_have_count(2)
    # Up-arrow in the empty composer edits her last message.
    composer = fresh.get_by_test_id("composer-input")
    composer.press("ArrowUp")
    expect(composer).to_have_value("secnd try")
    composer.fill("second try")
    composer.press("Enter")
    expect(mine.nth(1).get_by_test_id("message-body")).to_have_text("second try")
    expect(mine.nth(1).get_by_test_id("edited")).to_be_visible()
    # Escape closes the thread panel, wherever the focus is, and the composer has it back.
    mine.nth(0).get_by_test_id("reply-message").click()
    panel = fresh.get_by_test_id("thread-panel")
    expect(panel).to_be_visible()
    fresh.get_by_test_id("thread-messages").focus()
    fresh.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(composer).to_be_focused()
    # Deleting a message moves the focus from its vanished button to the composer.
    fresh.on("dialog", lambda dialog: dialog.accept())
    mine.nth(1).get_by_test_id("delete-message").click()
    expect(mine.nth(1).get_by_test_id("message-body")).to_have_text("Message deleted")
    expect(composer).to_be_focused()
    rex.close()
    fresh.context.close()
    assert errors == []


def test_the_inbox_and_member_lists_page_beyond_their_first_page(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    crowd = [dev_client(server, f"crowd{n}", "crowd") for n in range(4)]
    rooms = ["page-a", "page-b", "page-c", "page-d"]
    tess = dev_client(server, "tess", "crowd", *rooms)
    tess.close()
    # Five rooms at two a page: the sidebar lists them all.
    page = _page(browser, server.base, "tess", errors)
    for room in ["crowd", *rooms]:
        expect(page.locator(f'[data-testid="room-item"][data-room="{room}"]')).to_have_count(1)
    # Five members at three a page: "More members" shows the rest, then goes.
    _open(page, "room-item", "crowd")
    members = page.get_by_test_id("member")
    expect(members).to_have_count(3)
    more = page.get_by_test_id("members-more")
    more.click()
    expect(members).to_have_count(5)
    expect(more).to_be_hidden()
    for client in crowd:
        client.close()
    page.context.close()
    assert errors == []
