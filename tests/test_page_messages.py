"""The chat page's message list as people read it: text rendered safely (a Markdown subset,
links, mentions; hostile input stays text), an author's run grouped, days separated, "New
messages" at the read marker, "Jump to latest", and long messages collapsed."""

from __future__ import annotations

from collections.abc import Iterator
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
    _sign_in,
)

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One development server for the module: each test talks in rooms of its own."""
    yield from _running(tmp_path_factory.mktemp("messages"))


HOSTILE = (
    '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">\n'
    "[click me](javascript:window.pwned=3) and javascript:window.pwned=4 and "
    "[data](data:text/html,<b>x</b>)\n"
    "**bold** _slanted_ `inline <b>code</b>` see https://example.com/a?b=1. hi @alice, @bob\n"
    "> quoted **words**\n"
    "```\n<script>window.pwned = 5</script>\n**not bold**\n```"
)


def test_markdown_links_and_mentions_render_and_hostile_input_stays_inert(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    alice = _sign_in(browser, server.base, "alice", DESKTOP, errors)
    _join(alice, "hostile")
    bob = dev_client(server, "bob", "hostile")
    bob.ok("send", room="hostile", body=HOSTILE)
    bob.close()
    body = alice.locator('[data-testid="message"][data-from="bob"] [data-testid="message-body"]')
    expect(body).to_have_count(1)
    expect(body.locator("strong").first).to_have_text("bold")
    expect(body.locator("em")).to_have_text("slanted")
    expect(body.locator("p code")).to_have_text("inline <b>code</b>")
    expect(body.locator("blockquote")).to_have_text("quoted words")
    expect(body.locator("blockquote strong")).to_have_text("words")
    expect(body.locator("pre code")).to_have_text("<script>window.pwned = 5</script>\n**not bold**")
    # One link, the safe one, without the sentence's full stop; it opens apart from the page.
    link = body.locator("a")
    expect(link).to_have_count(1)
    expect(link).to_have_attribute("href", "https://example.com/a?b=1")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    # Mentions highlighted, this user's apart; the message is marked as mentioning her.
    expect(body.locator('[data-testid="mention"]')).to_have_count(2)
    expect(body.locator('.mention.me[data-user="alice"]')).to_have_text("@alice")
    expect(alice.locator('[data-testid="message"][data-from="bob"]')).to_have_class(
        "message mentions-me"
    )
    # Whatever was markup is text: no element made from it, no script ran.
    assert body.locator("script, img, b").count() == 0
    text = body.inner_text()
    assert "<script>window.pwned = 1</script>" in text
    assert "[click me](javascript:window.pwned=3)" in text
    assert "javascript:window.pwned=4" in text
    assert alice.evaluate("() => window.pwned") is None
    alice.context.close()
    assert errors == []


def test_runs_days_new_messages_divider_jump_to_latest_and_collapsed_long_messages(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    alice = _sign_in(browser, server.base, "alice2", {"width": 900, "height": 600}, errors)
    _join(alice, "other")
    _join(alice, "reading")
    bob = dev_client(server, "bob2", "reading")
    for n in range(3):
        bob.ok("send", room="reading", body=f"run {n}")
    _say(alice, "my answer")
    expect(alice.locator('[data-testid="message"][data-mid]', has_text="my answer")).to_have_count(
        1
    )
    # Bob's run: his name once, then grouped; her message starts a run of its own.
    runs = alice.locator('[data-testid="message"]')
    assert [runs.nth(n).get_attribute("class") for n in range(4)] == [
        "message",
        "message grouped",
        "message grouped",
        "message mine",
    ]
    expect(alice.get_by_test_id("day-separator")).to_have_text("Today")
    # Away in another room, she misses forty messages, a long one among them.
    _open(alice, "room-item", "other")
    for n in range(40):
        bob.ok("send", room="reading", body=f"missed {n}")
    long_text = "\n".join(f"line {n} of a long message" for n in range(40))
    bob.ok("send", room="reading", body=long_text)
    unread = alice.locator('[data-testid="room-item"][data-room="reading"] [data-testid="unread"]')
    expect(unread).to_have_text("41")
    _open(alice, "room-item", "reading")
    divider = alice.get_by_test_id("new-divider")
    expect(divider).to_have_text("New messages")
    # The divider sits right above the first message she missed, and the view starts there.
    after = alice.locator('[data-testid="new-divider"] + [data-testid="message"]')
    expect(after).to_contain_text("missed 0")
    expect(divider).to_be_in_viewport()
    jump = alice.get_by_test_id("jump-latest")
    expect(jump).to_be_visible()
    jump.click()
    last = alice.locator('[data-testid="message"]').last
    expect(last).to_be_in_viewport()
    expect(jump).to_be_hidden()
    # The long message is collapsed until she asks for the rest.
    more = last.get_by_test_id("show-more")
    expect(more).to_have_attribute("aria-expanded", "false")
    expect(last.get_by_test_id("message-body")).to_have_class("bubble collapsed")
    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(last.get_by_test_id("message-body")).to_have_class("bubble")
    bob.close()
    alice.context.close()
    assert errors == []


DAYS_JS = """
async () => {
  const { dayLabel } = await import("/static/render.js");
  const now = new Date(2026, 4, 20, 9, 30).getTime();   // a Wednesday morning
  return [
    dayLabel(new Date(2026, 4, 20, 0, 1).getTime(), now),
    dayLabel(new Date(2026, 4, 19, 23, 59).getTime(), now),
    dayLabel(new Date(2026, 4, 12, 12, 0).getTime(), now),
    dayLabel(new Date(2025, 11, 31, 12, 0).getTime(), now),
  ];
}
"""


def test_day_separators_say_today_yesterday_and_the_date(
    browser: Any,
    server: ServerProcess,
) -> None:
    context = browser.new_context(locale="en-GB", timezone_id="Europe/Paris")
    page = context.new_page()
    page.goto(f"{server.base}/static/render.js")
    labels = page.evaluate(DAYS_JS)
    context.close()
    assert labels == ["Today", "Yesterday", "Tuesday 12 May", "31 December 2025"]


def test_the_reaction_picker_works_by_keyboard_and_a_second_pick_takes_it_back(
    browser: Any,
    server: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    uma = _sign_in(browser, server.base, "uma", DESKTOP, errors)
    _join(uma, "picks")
    _say(uma, "pick one")
    message = uma.locator('[data-testid="message"][data-mid]', has_text="pick one")
    expect(message).to_have_count(1)
    more = message.get_by_test_id("react-more")
    more.click()
    picker = message.get_by_test_id("reaction-picker")
    expect(picker).to_be_visible()
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(picker.get_by_test_id("react-choice").first).to_be_focused()
    # Escape closes the picker alone, and the focus goes back to its button.
    uma.keyboard.press("Escape")
    expect(picker).to_have_count(0)
    expect(more).to_be_focused()
    # Open again, move right once, choose: the second reaction is hers.
    uma.keyboard.press("Enter")
    uma.keyboard.press("ArrowRight")
    uma.keyboard.press("Enter")
    chip = message.locator('[data-testid="reaction"][data-key="❤️"]')
    expect(chip).to_have_attribute("data-me", "true")
    expect(chip).to_have_attribute("aria-label", "❤️ 1, yours among them")
    # The same choice again takes it back.
    message.get_by_test_id("react-more").click()
    message.locator('[data-testid="react-choice"][data-key="❤️"]').click()
    expect(chip).to_have_count(0)
    uma.context.close()
    assert errors == []
