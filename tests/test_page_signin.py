"""Signing in to the chat page on a production server (no ``--dev``): a token handed over by the
application (URL fragment, message, paste), renewed through its endpoint (``token_url``), and
the way back to the sign-in form when the application no longer signs the person in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Client
from tests.test_browser import (
    BROWSER_SECRET,
    EXPECT_TIMEOUT_MS,
    ServerProcess,
)

pytestmark = pytest.mark.process

TOKEN_URL = "/app/token"
LOGIN_URL = "/app/login"
# A short token's life: long enough for a loaded machine to open the page with it, short enough
# to wait for its end. Every token shorter than the notice gets the refresh event at once.
SHORT_TTL_S = 3
TOKEN_ARGS = ("--token-refresh-notice", "30", "--token-expiry-grace", "0.5")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server outside development mode whose page signs in through the application."""
    tmp = tmp_path_factory.mktemp("production")
    # The port is the kernel's pick, so the page's origin is allowed by "*".
    args = (
        *TOKEN_ARGS,
        "--token-url",
        TOKEN_URL,
        "--login-url",
        LOGIN_URL,
        "--allowed-origins",
        "*",
    )
    process = ServerProcess(tmp / "data", tmp / "server.log", args, dev=False)
    process.start()
    try:
        yield process
    finally:
        process.kill()


def mint(user: str, ttl_s: int) -> str:
    from actorim.domain.auth import TokenAuthority

    return TokenAuthority(BROWSER_SECRET).mint(user, ttl_s=ttl_s)


def _page(browser: Any, errors: list[str]) -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    page = browser.new_context().new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def _application(page: Any, base: str, answer: Any) -> list[str]:
    """The application's token endpoint, answered by ``answer()`` (a token, or None for 401);
    returns the list of tokens it handed out."""
    handed: list[str] = []

    def serve(route: Any) -> None:
        token = answer()
        if token is None:
            route.fulfill(status=401, json={"error": "not signed in"})
            return
        handed.append(token)
        route.fulfill(json={"token": token})

    page.route(f"{base}{TOKEN_URL}", serve)
    return handed


def test_without_a_token_the_page_offers_the_applications_sign_in_and_a_token_field(
    browser: Any,
    production: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    _application(page, production.base, lambda: None)  # nobody signed in there
    page.goto(f"{production.base}/")
    expect(page.get_by_test_id("signin-hint")).to_have_text(
        "Sign in with your account, or paste a token the application gave you."
    )
    expect(page.get_by_test_id("signin-login")).to_have_attribute("href", LOGIN_URL)
    expect(page.get_by_test_id("signin-name")).to_be_hidden()
    expect(page.get_by_test_id("signin-token")).to_be_visible()
    page.context.close()
    assert errors == []


def test_a_fragment_token_signs_in_leaves_the_address_bar_and_is_renewed_by_the_application(
    browser: Any,
    production: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    short = mint("hal", SHORT_TTL_S)
    handed = _application(page, production.base, lambda: mint("hal", 3600))
    with page.expect_request(f"{production.base}{TOKEN_URL}"):
        page.goto(f"{production.base}/#token={short}")
        expect(page.get_by_test_id("me")).to_have_text("hal")
        expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
    # The token is gone from the address bar, so from the history and from a copied link.
    assert page.evaluate("() => location.href") == f"{production.base}/"
    # The server asked for a fresh token before the short one ended; a connection holding the
    # short token alone is closed at its end, and the page's is not.
    idle = Client(f"ws://127.0.0.1:{production.port}/ws")
    idle.connect(short)
    assert idle.wait_closed(timeout=10).code == 4001
    idle.close()
    page.get_by_test_id("join-room").fill("renewed")
    page.get_by_test_id("join-submit").click()
    page.get_by_test_id("composer-input").fill("still here")
    page.get_by_test_id("composer-input").press("Enter")
    sent = page.locator('[data-testid="message"][data-mid]', has_text="still here")
    expect(sent).to_have_count(1)
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
    assert len(handed) == 1, "the page reconnected instead of refreshing its token"
    # A reload keeps the tab signed in, with no token in its address.
    page.reload()
    expect(page.get_by_test_id("me")).to_have_text("hal")
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
    page.context.close()
    assert errors == []


def test_signed_out_of_the_application_the_page_returns_to_its_sign_in_form_and_says_why(
    browser: Any,
    production: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    _application(page, production.base, lambda: None)
    page.goto(f"{production.base}/#token={mint('ida', SHORT_TTL_S)}")
    # The server's refresh event finds nobody signed in at the application.
    expect(page.get_by_test_id("signin-error")).to_have_text(
        "You are signed out of the application: sign in again."
    )
    expect(page.get_by_test_id("signin")).to_be_visible()
    expect(page.get_by_test_id("chat")).to_be_hidden()
    page.context.close()
    assert errors == []


def test_a_token_posted_by_the_opening_page_or_pasted_signs_in(
    browser: Any,
    production: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    _application(page, production.base, lambda: None)
    page.goto(f"{production.base}/")
    expect(page.get_by_test_id("signin-token")).to_be_visible()
    # A message of another type, or with no string token, is ignored.
    page.evaluate(
        """() => {
          window.postMessage({ type: "other", token: "x" }, location.origin);
          window.postMessage({ type: "actorim.token", token: 42 }, location.origin);
        }"""
    )
    page.evaluate(
        "(token) => window.postMessage({ type: 'actorim.token', token }, location.origin)",
        mint("jo", 3600),
    )
    expect(page.get_by_test_id("me")).to_have_text("jo")
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")

    pasted = _page(browser, errors)
    _application(pasted, production.base, lambda: None)
    pasted.goto(f"{production.base}/")
    pasted.get_by_test_id("signin-token").fill(f"  {mint('kim', 3600)}\n")
    pasted.get_by_test_id("token-submit").click()
    expect(pasted.get_by_test_id("me")).to_have_text("kim")
    expect(pasted.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
    page.context.close()
    pasted.context.close()
    assert errors == []


def test_an_expired_token_is_refused_on_the_form(
    browser: Any,
    production: ServerProcess,
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, errors)
    _application(page, production.base, lambda: None)
    page.goto(f"{production.base}/")
    from actorim.domain.auth import TokenAuthority

    old = TokenAuthority(BROWSER_SECRET).mint("lou", ttl_s=60, now=1_000_000)
    page.get_by_test_id("signin-token").fill(old)
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("signin-error")).to_have_text(
        "That token has expired: get a new one from the application."
    )
    page.context.close()
    assert errors == []


def test_without_a_token_endpoint_a_handed_token_lasts_until_its_end_then_the_form_says_so(
    browser: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    args = (*TOKEN_ARGS, "--allowed-origins", "*")
    own = ServerProcess(tmp_path / "data", tmp_path / "server.log", args, dev=False)
    own.start()
    try:
        errors: list[str] = []
        page = _page(browser, errors)
        page.goto(f"{own.base}/#token={mint('max', SHORT_TTL_S)}")
        expect(page.get_by_test_id("me")).to_have_text("max")
        # No endpoint to renew it: the server closes the connection 4001 at the token's end,
        # and the page goes back to its form instead of retrying a spent token.
        expect(page.get_by_test_id("signin-error")).to_have_text(
            "Your sign-in has ended (the token expired or was revoked): sign in again."
        )
        expect(page.get_by_test_id("chat")).to_be_hidden()
        # The spent token is forgotten: a reload stays on the form.
        page.reload()
        expect(page.get_by_test_id("signin-token")).to_be_visible()
        expect(page.get_by_test_id("chat")).to_be_hidden()
        page.context.close()
        assert errors == []
    finally:
        own.kill()
