"""The chat page audited by axe-core in Chromium (no serious or critical violation on the
sign-in, chat and thread views, light and dark), and the screenshots in docs/clients.md taken
from the same views (desktop and phone, light and dark) and checked against the docs.

``ACTORIM_UPDATE_SCREENSHOTS=1`` writes the screenshots into ``docs/images/``; without it the
test takes them all the same and checks that the docs' copies exist, are named in
docs/clients.md and have each view's size.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.page_support import dev_client
from tests.test_browser import (
    DESKTOP,
    EXPECT_TIMEOUT_MS,
    PHONE,
    ServerProcess,
    _running,
)

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parent.parent
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
IMAGES = ROOT / "docs" / "images"
CLIENTS_DOC = ROOT / "docs" / "clients.md"
UPDATE = os.environ.get("ACTORIM_UPDATE_SCREENSHOTS") == "1"
# The impacts a violation may not have.
BLOCKING = {"serious", "critical"}
SCHEMES = ("light", "dark")
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process_dir = tmp_path_factory.mktemp("a11y")
    yield from _running(process_dir)


@pytest.fixture(scope="module")
def conversation(server: ServerProcess) -> Iterator[str]:
    """A room with what a day of chat holds: runs of messages, Markdown, a link, a mention of
    the viewer, a reaction, a thread; the root's mid."""
    ada, ben, viewer = (
        dev_client(server, "ada"),
        dev_client(server, "ben"),
        dev_client(server, "viewer"),
    )
    for client in (ada, ben, viewer):
        client.ok("join", room="design")
    viewer.close()  # the viewer's pages find the room in their inbox
    ada.ok("room.update", room="design", title="Design", topic="the new release")
    ada.ok("send", room="design", body="Morning! The **release notes** are in `docs/` now.")
    ada.ok("send", room="design", body="Draft: https://example.com/notes")
    root = ben.ok("send", room="design", body="> The page should follow dark mode\nAgreed, _done_.")
    ada.ok("send", room="design", body="Looks good, @viewer can you check the phone layout?")
    ben.ok("react", mid=root["mid"], key="👍", on=True)
    ada.ok("send", room="design", body="Yes, tried it on mine.", reply_to=root["mid"])
    ben.ok("send", to="viewer", body="Lunch at noon?")
    yield root["mid"]
    ada.close()
    ben.close()


def _audit(page: Any) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core finds in the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=AXE.read_text())
    results = page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ["violations"] });
          return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary) }));
        }"""
    )
    return [v for v in results if v["impact"] in BLOCKING]


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _shoot(page: Any, name: str, tmp_path: Path) -> None:
    """A screenshot of the page as ``name``: into docs/images/ when updating, else a scratch
    copy; either way the docs' copy must be there, named in the docs, of this view's size."""
    target = (IMAGES if UPDATE else tmp_path) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    viewport = page.viewport_size
    docs_copy = IMAGES / f"{name}.png"
    assert docs_copy.exists(), f"{docs_copy} is missing: run with ACTORIM_UPDATE_SCREENSHOTS=1"
    assert _png_size(docs_copy) == (viewport["width"], viewport["height"]), docs_copy
    assert f"images/{name}.png" in CLIENTS_DOC.read_text(), f"docs/clients.md shows no {name}"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sign_in_chat_and_thread_views_pass_the_audit_and_match_the_docs_screenshots(
    browser: Any,
    server: ServerProcess,
    conversation: str,
    scheme: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    found: dict[str, list[dict[str, Any]]] = {}
    for size, viewport in VIEWPORTS.items():
        # The page's CSP allows no inline script: the audit's engine is let in this way.
        context = browser.new_context(
            viewport=viewport, color_scheme=scheme, bypass_csp=True, locale="en-GB"
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error, out=errors: out.append(str(error)))
        page.goto(f"{server.base}/")
        name = page.get_by_test_id("signin-name")
        expect(name).to_be_visible()
        expect(page.get_by_test_id("signin-hint")).to_be_visible()
        found[f"{size} sign-in"] = _audit(page)
        name.fill("viewer")
        page.get_by_test_id("signin-submit").click()
        room = page.locator('[data-testid="room-item"][data-room="design"] button')
        room.click()
        expect(page.get_by_test_id("conv-title")).to_have_text("Design")
        expect(page.get_by_test_id("thread-link")).to_have_text("1 reply")
        expect(page.locator('[data-testid="member"]')).to_have_count(3)
        page.get_by_test_id("composer-input").blur()
        found[f"{size} chat"] = _audit(page)
        _shoot(page, f"page-{size}-{scheme}", tmp_path)
        page.get_by_test_id("thread-link").click()
        expect(page.get_by_test_id("thread-list")).to_contain_text("tried it on mine")
        found[f"{size} thread"] = _audit(page)
        context.close()
        assert errors == []
    blocking = {view: v for view, v in found.items() if v}
    assert not blocking, json.dumps(blocking, indent=1, ensure_ascii=False)


def test_the_production_sign_in_view_passes_the_audit(
    browser: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    own = ServerProcess(tmp_path / "data", tmp_path / "server.log", ("--login-url", "/login"))
    own.dev = False
    own.start()
    try:
        for scheme in SCHEMES:
            context = browser.new_context(viewport=DESKTOP, color_scheme=scheme, bypass_csp=True)
            page = context.new_page()
            page.goto(f"{own.base}/")
            expect(page.get_by_test_id("signin-token")).to_be_visible()
            violations = _audit(page)
            context.close()
            assert violations == [], scheme
    finally:
        own.kill()
