"""The chat page and its client in a real headless Chromium, against a real server process.

The server runs as a subprocess (``actorim serve``) so that it can be stopped with SIGTERM and
started again on the same port and data directory, the way a deploy restarts it; Chromium is
driven by Playwright's sync API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorim.protocol.restart import restart_delay
from tests.support import Client, http_get, read_port_file
from tests.test_cluster import TOKENS, Spawner
from tests.test_gaps import GAP_MESSAGES as SKIPPED_MESSAGES
from tests.test_gaps import LARGE_BODY, CutOff, send_to_room
from tests.test_server_tokens import short_ttl_s

pytestmark = pytest.mark.process  # Chromium and the server run as processes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 760}

# Page-side waits: a restart (drain, exit, start) plus the client's back-off fits well within.
EXPECT_TIMEOUT_MS = 15_000
# How long the server process may take to start or to drain and exit.
PROCESS_TIMEOUT_S = 15.0
# The server closes its connections over this many seconds on SIGTERM (default 5).
DRAIN_SECONDS = "0.2"

# Lateness of browser timers and of Playwright's polling, over a heartbeat window.
TIMER_SLACK_S = 0.5
# The chat page's history page size (app.js), and messages seeded to page back through.
HISTORY_PAGE = 30
SEEDED = 75

NOT_CONNECTED = re.compile(r"^(CONNECTING|DISCONNECTED|CIRCUIT_OPEN)$")


class ServerProcess:
    """``actorim serve`` in a subprocess with a data directory of its own; the first start
    listens on port 0 and reads the port back, a restart keeps it."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        args: tuple[str, ...] = (),
        *,
        dev: bool = True,
    ) -> None:
        self.dev = dev
        self.port = 0  # until the first start has read it back
        self.data_dir = data_dir
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        port_file = self.log_path.with_suffix(".port")
        port_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "actorim",
            "serve",
            "--port",
            str(self.port),
            "--port-file",
            str(port_file),
            *(["--dev"] if self.dev else []),
            "--store",
            "sqlite",
            "--data-dir",
            str(self.data_dir),
            "--drain-seconds",
            DRAIN_SECONDS,
            *self.args,
        ]
        # Outside development mode the node needs a secret; the page never sees it.
        env = {**os.environ, "ACTORIM_SECRET": "browser-test-secret-0123456789abcdef"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self.port = read_port_file(port_file, self.proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log()}") from None
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not become ready:\n{self.log()}")
            time.sleep(0.05)  # polling the readiness endpoint: a process start has no event

    def _ready(self) -> bool:
        try:
            status, _, _ = http_get(f"{self.base}/readyz", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def stop(self) -> int:
        """SIGTERM, as a process manager sends it; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit on SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def launch_chromium() -> Iterator[Any]:
    """Chromium under Playwright until the generator is closed: the session's ``browser``
    fixture (tests/conftest.py). Missing, it fails the test under ``CI=true``, skips it else."""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing: install Debian's chromium package to run browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _running(tmp_path: Path, args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """A fixture's server process (``args`` are ``actorim serve`` flags), killed after."""
    process = ServerProcess(tmp_path / "data", tmp_path / "server.log", args)
    process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from _running(tmp_path)


@pytest.fixture
def quick_presence_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own whose users are shown away 0.5 s after their last page
    closes (5 s by default): for a test that waits for it."""
    yield from _running(tmp_path, ("--presence-grace", "0.5"))


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that neither restart, pause nor reconfigure theirs: each of
    them talks in rooms of its own, so they need no server of their own."""
    yield from _running(tmp_path_factory.mktemp("shared"))


# -- static files, over plain HTTP ----------------------------------------------------------------


def test_the_chat_page_and_its_files_are_served_with_their_types_and_nothing_else(
    start_node: Any,
) -> None:
    node = start_node()
    status, headers, body = http_get(f"{node.http}/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b'src="/static/app.js"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    for name, content_type in [
        ("actorim.js", "text/javascript; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
    ]:
        status, headers, body = http_get(f"{node.http}/static/{name}")
        assert (status, headers["content-type"]) == (200, content_type), name
        assert headers["cache-control"] == "no-cache"
        assert int(headers["content-length"]) == len(body) > 0
    for path in [
        "/static/",
        "/static/missing.js",
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e/app.py",
        "/static/.hidden.js",
        "/static/sub/actorim.js",
        "/static/__init__.py",
        "/index.html",
    ]:
        assert http_get(f"{node.http}{path}")[0] == 404, path


def test_an_unchanged_file_is_answered_not_modified(start_node: Any) -> None:
    node = start_node()
    _, headers, _ = http_get(f"{node.http}/static/actorim.js")
    status, again, body = http_get(
        f"{node.http}/static/actorim.js", headers={"If-None-Match": headers["etag"]}
    )
    assert (status, body, again["etag"]) == (304, b"", headers["etag"])


# -- the sign-in form ------------------------------------------------------------------------------


@pytest.mark.parametrize("dev", [True, False], ids=["development", "tokens"])
def test_the_sign_in_hint_says_what_a_name_does_on_this_server(
    browser: Any, tmp_path: Path, dev: bool
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", dev=dev)
    server.start()
    page = browser.new_page()
    try:
        page.goto(f"{server.base}/")
        hint = page.get_by_test_id("signin-hint")
        expect(hint).to_be_visible()
        if dev:
            expect(hint).to_have_text("Development mode: any name signs you in.")
            return
        expect(hint).to_contain_text("tokens from its application")
        expect(hint).not_to_contain_text("any name signs you in")
        # No name field to try: a token is pasted, and a wrong one is named as such.
        expect(page.get_by_test_id("signin-name")).to_be_hidden()
        page.get_by_test_id("signin-token").fill("alice")
        page.get_by_test_id("token-submit").click()
        expect(page.get_by_test_id("signin-error")).to_contain_text("That is not a token")
        expect(hint).to_contain_text("only in development mode")
    finally:
        page.close()
        server.kill()


# -- the client's decisions, run in the browser ---------------------------------------------------

STATIC = Path(__file__).resolve().parent.parent / "actorim" / "web" / "static"

DECISIONS_JS = """
async () => {
  const m = await import("/static/actorim.js");
  const out = {};
  const b = { floor: 100, cap: 1000 };
  out.backoff = [
    m.backoffDelay(0, b, () => 0), m.backoffDelay(0, b, () => 1), m.backoffDelay(3, b, () => 1),
    m.backoffDelay(10, b, () => 1), m.backoffDelay(2, b, () => 0.5),
  ];
  const policy = new m.ReconnectPolicy(
    { backoff: b, maxFailures: 3, cooldown: 5000, stableAfter: 1000 }, () => 0.5);
  out.failing = [policy.failed(0), policy.failed(1), policy.failed(2), policy.failed(3)];
  policy.connected(10);
  out.stableLoss = policy.lost(2000);
  policy.connected(3000);
  out.quickLoss = policy.lost(3100);
  const restart = new m.ReconnectPolicy(
    { backoff: b, maxFailures: 2, cooldown: 5000, stableAfter: 1000, restartGrace: 3000 },
    () => 0.5);
  restart.connected(0);
  out.restart = [restart.lost(10000, true), restart.failed(10500), restart.failed(12900),
                 restart.failed(13000), restart.failed(13500)];
  const hinted = new m.ReconnectPolicy(
    { backoff: b, maxFailures: 2, cooldown: 5000, stableAfter: 1000, restartGrace: 3000 },
    () => 0.5);
  hinted.connected(0);
  out.hinted = [hinted.lost(10000, true, 2000), hinted.failed(14900), hinted.failed(15000),
                hinted.failed(15500)];
  out.hints = [
    m.restartDelay(1012, "service restart; reconnect in 2350 ms"),
    m.restartDelay(1012, "service restart"), m.restartDelay(1001, "reconnect in 5 ms"),
    m.restartDelay(1012, "reconnect in 999999999 ms"),
  ];
  const hb = new m.HeartbeatMonitor(1000);
  hb.heard(0);
  out.heartbeat = [hb.tickEvery, hb.tick(100), hb.tick(250), hb.tick(500), hb.tick(750)];
  hb.heard(800);
  out.heartbeatAfterFrame = [hb.tick(1000), hb.tick(1050)];
  hb.heard(2000);
  out.heartbeatLateTick = [hb.tick(9000), hb.tick(9400), hb.tick(9500)];
  const ids = new m.RecentIds(3);
  out.ids = [ids.add("a"), ids.add("b"), ids.add("c"), ids.add("a"), ids.add("d"),
             ids.add("a"), ids.size];
  const frame = m.decodeFrame('{"body":{"$bytes":"AAEC/w=="},"map":{"$bytes":"AA==","x":1}}');
  out.bytes = [frame.body instanceof Uint8Array, Array.from(frame.body), frame.map.x];
  out.encoded = m.encodeFrame({ t: "send", body: new Uint8Array([0, 1, 2, 255]) });
  out.cid = m.newCid();
  return out;
}
"""


def test_client_backs_off_with_jitter_opens_the_circuit_notices_silence_and_drops_duplicates(
    browser: Any,
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()

        def serve(route: Any) -> None:
            name = route.request.url.rsplit("/", 1)[-1]
            if name.endswith(".js"):
                route.fulfill(path=str(STATIC / name), content_type="text/javascript")
            else:
                route.fulfill(body="<!doctype html><title>client</title>", content_type="text/html")

        page.route("http://actorim.test/**", serve)
        page.goto("http://actorim.test/")
        out = page.evaluate(DECISIONS_JS)
    finally:
        context.close()
    # floor + random(0, min(cap, floor * 2**attempt))
    assert out["backoff"] == [100, 200, 900, 1100, 300]
    assert out["failing"] == [
        {"state": "DISCONNECTED", "delay": 200},
        {"state": "DISCONNECTED", "delay": 300},
        {"state": "CIRCUIT_OPEN", "delay": 5000},
        {"state": "CIRCUIT_OPEN", "delay": 5000},
    ]
    assert out["stableLoss"] == {"state": "DISCONNECTED", "delay": 150}
    assert out["quickLoss"] == {"state": "DISCONNECTED", "delay": 200}
    # After a going-away close, failures within the restart grace (3 s) do not count; past it
    # two do, and the circuit opens.
    assert out["restart"] == [
        {"state": "DISCONNECTED", "delay": 150},
        {"state": "DISCONNECTED", "delay": 200},
        {"state": "DISCONNECTED", "delay": 300},
        {"state": "DISCONNECTED", "delay": 500},
        {"state": "CIRCUIT_OPEN", "delay": 5000},
    ]
    # A hinted delay (2 s) comes before the jitter, and the grace (3 s) starts when it ends.
    assert out["hinted"] == [
        {"state": "DISCONNECTED", "delay": 2150},
        {"state": "DISCONNECTED", "delay": 200},
        {"state": "DISCONNECTED", "delay": 300},
        {"state": "CIRCUIT_OPEN", "delay": 5000},
    ]
    assert out["hints"] == [2350, 0, 0, 60_000]
    assert out["heartbeat"] == [125, None, "ping", None, "dead"]
    assert out["heartbeatAfterFrame"] == [None, "ping"]
    assert out["heartbeatLateTick"] == ["ping", None, "dead"]
    assert out["ids"] == [True, True, True, False, True, True, 3]
    assert out["bytes"] == [True, [0, 1, 2, 255], 1]
    assert out["encoded"] == '{"t":"send","body":{"$bytes":"AAEC/w=="}}'
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", out["cid"]
    )


# -- two people chatting through a server restart -------------------------------------------------


def _sign_in(
    browser: Any, base: str, user: str, viewport: dict[str, int], errors: list[str]
) -> Any:
    page = browser.new_context(viewport=viewport).new_page()
    page.on("pageerror", lambda error: errors.append(f"{user}: {error}"))
    page.goto(f"{base}/")
    page.get_by_test_id("signin-name").fill(user)
    page.get_by_test_id("signin-submit").click()
    return page


def _join(page: Any, room: str) -> None:
    """Once the page is connected, join ``room`` from its sidebar."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
    page.get_by_test_id("join-room").fill(room)
    page.get_by_test_id("join-submit").click()


def _bodies(page: Any, text: str) -> Any:
    """The message bodies on screen whose whole text is ``text``."""
    return page.get_by_test_id("message-body").filter(has_text=re.compile(f"^{re.escape(text)}$"))


def _status_of(page: Any, text: str) -> Any:
    return (
        page.get_by_test_id("message").filter(has=_bodies(page, text)).get_by_test_id("msg-status")
    )


def _say(page: Any, text: str) -> None:
    page.get_by_test_id("composer-input").fill(text)
    page.get_by_test_id("composer-input").press("Enter")


def _ann_and_bob_in(browser: Any, base: str, room: str, errors: list[str]) -> tuple[Any, Any]:
    """Desktop pages of ann and bob, both in ``room`` (ann's page sees the two of them)."""
    from playwright.sync_api import expect

    ann = _sign_in(browser, base, "ann", DESKTOP, errors)
    bob = _sign_in(browser, base, "bob", DESKTOP, errors)
    for page in (ann, bob):
        _join(page, room)
    expect(ann.get_by_test_id("member")).to_have_count(2)
    return ann, bob


def _open(page: Any, kind: str, name: str) -> None:
    """Open a room or direct conversation from the sidebar (back to it first on a phone)."""
    back = page.get_by_test_id("back")
    if back.is_visible():
        back.click()
    attr = "room" if kind == "room-item" else "user"
    page.locator(f'[data-testid="{kind}"][data-{attr}="{name}"] button').click()


def test_two_people_chat_and_their_pages_ride_out_a_server_restart(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    alice = _sign_in(browser, server.base, "alice", PHONE, errors)
    bob = _sign_in(browser, server.base, "bob", DESKTOP, errors)
    for page in (alice, bob):
        _join(page, "lobby")
    expect(alice.get_by_test_id("member")).to_have_count(2)
    expect(bob.locator('[data-testid="member"][data-user="alice"]')).to_have_attribute(
        "data-status", "online"
    )

    # A direct message: delivered as soon as bob's page has it, read once he looks at it.
    alice.get_by_test_id("back").click()
    alice.get_by_test_id("dm-user").fill("bob")
    alice.get_by_test_id("dm-submit").click()
    _say(alice, "psst, bob")
    expect(_status_of(alice, "psst, bob")).to_have_attribute("data-status", "delivered")
    unread = bob.locator('[data-testid="dm-item"][data-user="alice"] [data-testid="unread"]')
    expect(unread).to_have_text("1")
    _open(bob, "dm-item", "alice")
    expect(_bodies(bob, "psst, bob")).to_have_count(1)
    expect(_status_of(alice, "psst, bob")).to_have_attribute("data-status", "read")

    # A room conversation, both ways; alice has the last word, so her page re-joins the room
    # after the restart from before her own message, which comes back and must not double.
    _open(alice, "room-item", "lobby")
    _open(bob, "room-item", "lobby")
    _say(alice, "hello from alice")
    expect(_bodies(bob, "hello from alice")).to_have_count(1)
    _say(bob, "hi alice, bob here")
    expect(_bodies(alice, "hi alice, bob here")).to_have_count(1)
    _say(alice, "one more before the restart")
    expect(_bodies(bob, "one more before the restart")).to_have_count(1)

    # The server restarts (SIGTERM, drain, exit, start on the same port and data).
    assert server.stop() == 0
    for page in (alice, bob):
        expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", NOT_CONNECTED)
        expect(page.get_by_test_id("conn-banner")).to_be_visible()
        expect(page.get_by_test_id("conn-banner-text")).to_contain_text("Reconnecting")
    alice.screenshot(path=str(tmp_path / "alice-phone-reconnecting.png"))
    # Written while the server is down: kept, shown as sending, sent once it is back.
    _say(alice, "alice, during the restart")
    expect(_status_of(alice, "alice, during the restart")).to_have_attribute(
        "data-status", "sending"
    )
    _open(bob, "dm-item", "alice")
    _say(bob, "bob's DM, during the restart")
    expect(_status_of(bob, "bob's DM, during the restart")).to_have_attribute(
        "data-status", "sending"
    )
    server.start()
    for page in (alice, bob):
        expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
        expect(page.get_by_test_id("conn-banner")).to_be_hidden()

    expect(_status_of(bob, "bob's DM, during the restart")).to_have_attribute(
        "data-status", "delivered"
    )
    _open(alice, "dm-item", "bob")
    expect(_bodies(alice, "bob's DM, during the restart")).to_have_count(1)
    expect(_status_of(bob, "bob's DM, during the restart")).to_have_attribute("data-status", "read")
    alice.screenshot(path=str(tmp_path / "alice-phone-dm.png"))
    _open(bob, "room-item", "lobby")
    expect(_bodies(bob, "alice, during the restart")).to_have_count(1)
    _say(bob, "after the restart")
    _open(alice, "room-item", "lobby")
    expect(_bodies(alice, "after the restart")).to_have_count(1)
    _say(alice, "alice is back")
    expect(_bodies(bob, "alice is back")).to_have_count(1)

    # Nothing lost, nothing doubled, nothing left pending.
    room = [
        "hello from alice",
        "hi alice, bob here",
        "one more before the restart",
        "alice, during the restart",
        "after the restart",
        "alice is back",
    ]
    for page in (alice, bob):
        for text in room:
            expect(_bodies(page, text)).to_have_count(1)
        expect(page.get_by_test_id("message")).to_have_count(len(room))
        expect(page.locator('[data-testid="msg-status"][data-status="sending"]')).to_have_count(0)
    for page, peer in ((alice, "bob"), (bob, "alice")):
        _open(page, "dm-item", peer)
        expect(page.get_by_test_id("message")).to_have_count(2)
    _open(alice, "room-item", "lobby")

    # Readable on a phone: nothing wider than the screen, in the conversation or the sidebar.
    width = "document.documentElement.scrollWidth"
    assert alice.evaluate(width) <= PHONE["width"]
    alice.screenshot(path=str(tmp_path / "alice-phone-room.png"))
    alice.get_by_test_id("back").click()
    assert alice.evaluate(width) <= PHONE["width"]
    alice.screenshot(path=str(tmp_path / "alice-phone-sidebar.png"))
    bob.screenshot(path=str(tmp_path / "bob-desktop-dm.png"))
    assert errors == []
    for page in (alice, bob):
        page.context.close()


TRACKER_JS = """async () => {
  const { TypingTracker } = await import("/static/actorim.js");
  const t = new TypingTracker();
  t.heard("room:r", "bob", 5000, 0);
  t.heard("room:r", "ann", 5000, 1000);
  t.heard("dm:eve", "eve", 5000, 1000);
  t.heard("room:r", "bad", undefined, 0);  // no ttl: ignored
  const out = [t.typing("room:r", 4000), t.nextExpiry(4000)];
  t.stopped("room:r", "ann");  // her message arrived
  out.push(t.typing("room:r", 4000), t.typing("room:r", 5000), t.nextExpiry(5000));
  t.heard("room:r", "bob", 5000, 5500);  // a renewal
  out.push(t.typing("room:r", 10_000), t.typing("room:r", 10_500), t.nextExpiry(10_500));
  return out;
}"""


# An indicator's ttl on the typing test's server: its expiry is waited out, so shorter than the
# default 5 s, and longer than the relay throttle (default 2 s) as the server requires.
TYPING_TTL_S = 2.5


@pytest.fixture
def typing_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from _running(tmp_path, ("--typing-ttl", str(TYPING_TTL_S)))


def test_the_chat_page_shows_who_is_typing_until_their_message_arrives(
    browser: Any, typing_server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    server = typing_server
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    alice = _sign_in(browser, server.base, "alice", DESKTOP, errors)
    bob = _sign_in(browser, server.base, "bob", DESKTOP, errors)
    for page in (alice, bob):
        _join(page, "lobby")
    for page in (alice, bob):
        expect(page.get_by_test_id("member")).to_have_count(2)
    alice_typing, bob_typing = alice.get_by_test_id("typing"), bob.get_by_test_id("typing")
    composer = alice.get_by_test_id("composer-input")

    # Typing shows under bob's conversation, never under alice's own.
    composer.press_sequentially("hello b")
    expect(bob_typing).to_have_text("alice is typing…")
    expect(bob_typing).to_have_attribute("data-users", "alice")
    expect(alice_typing).to_have_text("")
    # Her message ends it at once, long before its ttl is up.
    composer.press_sequentially("ob")
    composer.press("Enter")
    expect(_bodies(bob, "hello bob")).to_have_count(1)
    expect(bob_typing).to_have_text("")

    # Typing again shows it again at once (the message reset both throttles); with no renewal
    # it goes after its ttl.
    composer.press_sequentially("still")
    expect(bob_typing).to_have_text("alice is typing…")
    shown = time.monotonic()
    expect(bob_typing).to_have_text("", timeout=10_000)
    assert time.monotonic() - shown >= TYPING_TTL_S - 1, "the indicator went before its ttl"
    assert alice.evaluate("document.querySelector('[data-testid=composer-input]').value") == "still"

    # In a direct conversation the same: shown to bob in his conversation with alice, gone at
    # her message.
    composer.fill("")
    for page, peer in ((alice, "bob"), (bob, "alice")):
        page.get_by_test_id("dm-user").fill(peer)
        page.get_by_test_id("dm-submit").click()
    composer.press_sequentially("psst")
    expect(bob_typing).to_have_text("alice is typing…")
    composer.press("Enter")
    expect(_bodies(bob, "psst")).to_have_count(1)
    expect(bob_typing).to_have_text("")

    assert bob.evaluate(TRACKER_JS) == [
        ["ann", "bob"],
        1000,
        ["bob"],
        [],
        1000,
        ["bob"],
        [],
        None,
    ]
    assert errors == []
    for page in (alice, bob):
        page.context.close()


def _seed_archive(server: ServerProcess, room: str, reader: str, *, read: bool) -> None:
    """``SEEDED`` messages from dave in ``room``, of which ``reader`` is a member; she has read
    them all if ``read``, none otherwise."""
    clients = {}
    try:
        for user in (reader, "dave"):
            _, _, body = http_get(f"{server.base}/dev/token?user={user}")
            clients[user] = Client(f"ws://127.0.0.1:{server.port}/ws", json_frames=True)
            clients[user].connect(json.loads(body)["token"])
            clients[user].ok("join", room=room)
        for n in range(SEEDED):
            last = clients["dave"].ok("send", room=room, body=f"note {n:02d}")
        if read:
            clients[reader].ok("read", room=room, seq=last["seq"])
    finally:
        for client in clients.values():
            client.close()


def test_scrolling_back_loads_older_messages_up_to_the_first_in_order(
    browser: Any, shared_server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    # All read: the room opens at its newest message, and only scrolling back loads more.
    _seed_archive(shared_server, "archive", "erin", read=True)
    errors: list[str] = []
    erin = _sign_in(browser, shared_server.base, "erin", {"width": 1000, "height": 600}, errors)
    _open(erin, "room-item", "archive")
    messages = erin.get_by_test_id("message")
    box = erin.get_by_test_id("messages")
    expect(messages).to_have_count(HISTORY_PAGE)
    expect(messages.last).to_contain_text(f"note {SEEDED - 1:02d}")
    expect(erin.get_by_test_id("history-status")).to_have_text("Scroll up for earlier messages")
    box.evaluate("el => { el.scrollTop = 0; }")
    expect(messages).to_have_count(2 * HISTORY_PAGE)
    # The view stays on the message that was at the top, not at the start of the new page.
    assert box.evaluate("el => el.scrollTop") > 0
    box.evaluate("el => { el.scrollTop = 0; }")
    expect(messages).to_have_count(SEEDED)
    expect(erin.get_by_test_id("history-status")).to_have_text("Start of the conversation")
    bodies = erin.get_by_test_id("message-body").all_inner_texts()
    assert bodies == [f"note {n:02d}" for n in range(SEEDED)]
    assert errors == []
    erin.context.close()


def test_a_room_opened_at_new_messages_at_the_top_of_its_page_loads_the_page_before_it(
    browser: Any, shared_server: ServerProcess
) -> None:
    """The view starts at "New messages", here the top of the newest page: scrolling up from
    the very top moves nothing, so the page loads the page before without being asked."""
    from playwright.sync_api import expect

    _seed_archive(shared_server, "unread-archive", "fay", read=False)
    errors: list[str] = []
    fay = _sign_in(browser, shared_server.base, "fay", {"width": 1000, "height": 600}, errors)
    item = '[data-testid="room-item"][data-room="unread-archive"]'
    expect(fay.locator(f'{item} [data-testid="unread"]')).to_have_text(str(SEEDED))
    _open(fay, "room-item", "unread-archive")
    messages = fay.get_by_test_id("message")
    expect(messages).to_have_count(2 * HISTORY_PAGE)
    expect(fay.get_by_test_id("new-divider")).to_have_count(1)
    # Loaded before the view, which stayed where it was: off the top, on the newest page.
    assert fay.get_by_test_id("messages").evaluate("el => el.scrollTop") > 0
    expect(messages.nth(HISTORY_PAGE)).to_contain_text(f"note {SEEDED - HISTORY_PAGE:02d}")
    assert errors == []
    fay.context.close()


CLIENT_JS = """
async (heartbeat) => {
  const { ActorimClient } = await import("/static/actorim.js");
  const token = async () => (await (await fetch("/dev/token?user=carol")).json()).token;
  const client = new ActorimClient(`ws://${location.host}/ws`, {
    token, heartbeat, requestTimeout: 1000, backoff: { floor: 100, cap: 500 },
  });
  window.client = client;
  window.bodies = [];
  window.joins = [];
  client.on("msg", (msg) => window.bodies.push(msg.body));
  client.on("joined", (reply) => window.joins.push(reply));
  await client.connect();
  await client.join("ice");
  await client.send({ room: "ice", body: "before the freeze" });
  return client.state;
}
"""

AFTER_THAW_JS = """
async () => {
  await client.ping();  // the replay follows the join reply; the ping's reply comes after it
  await client.send({ room: "ice", body: "after the thaw" });
  const rejoin = joins[joins.length - 1];
  return { bodies, resumed: rejoin.resumed, recovered: rejoin.recovered };
}
"""


def test_the_client_notices_a_frozen_server_within_its_heartbeat_and_resumes_without_duplicates(
    browser: Any, server: ServerProcess
) -> None:
    heartbeat_ms = 1000
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.base}/")
    assert page.evaluate(CLIENT_JS, heartbeat_ms) == "CONNECTED"
    assert server.proc is not None
    frozen = time.monotonic()
    server.proc.send_signal(signal.SIGSTOP)  # the TCP connection stays open; only silence tells
    try:
        page.wait_for_function("() => client.state !== 'CONNECTED'", polling=20, timeout=10_000)
        noticed_after = time.monotonic() - frozen
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert noticed_after <= heartbeat_ms / 1000 + TIMER_SLACK_S
    page.wait_for_function("() => joins.length === 2", polling=20, timeout=10_000)
    after = page.evaluate(AFTER_THAW_JS)
    context.close()
    # The re-join asked for everything after the last message seen: the client's own message
    # came back, and reached the application once.
    assert after == {
        "bodies": ["before the freeze", "after the thaw"],
        "resumed": True,
        "recovered": True,
    }


# -- docs/clients.md's browser sample, as written -------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "clients.md"


def _docs_browser_sample() -> str:
    """The docs' browser samples as one module: the one that makes the client first, then
    those that use it (a module's imports may come anywhere at its top level)."""
    blocks = re.findall(r"```js\n(.*?)```", DOCS.read_text(), re.S)
    [first] = [block for block in blocks if "new ActorimClient" in block]
    rest = [block for block in blocks if block is not first and "/static/actorim.js" in block]
    assert rest, "the TypingTracker sample is missing"
    return "\n".join([first, *rest])


def _docs_browser_changes_sample() -> str:
    blocks = re.findall(r"```js\n(.*?)```", DOCS.read_text(), re.S)
    [sample] = [block for block in blocks if "client.edit(" in block]
    return sample


def test_the_browser_sample_of_the_docs_runs_as_written(
    browser: Any, server: ServerProcess
) -> None:
    # The page's CSP forbids inline scripts; an application would serve the sample as a file.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    logs: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: logs.append(message.text))
    page.goto(f"{server.base}/")
    # The sample is a module (static import, top-level await); the line after it marks its end.
    sample = _docs_browser_sample() + "\nwindow.sampleDone = { mid, seq };\n"
    page.add_script_tag(content=sample, type="module")
    page.wait_for_function("() => window.sampleDone", polling=20, timeout=EXPECT_TIMEOUT_MS)
    done = page.evaluate("() => window.sampleDone")
    context.close()
    assert errors == []
    assert "link CONNECTED" in logs, logs
    # The browser client hands the application its own stored sends as msg events too.
    assert "alice hello" in logs, logs
    assert done["seq"] == 1 and isinstance(done["mid"], str)


def _run_after_the_first_sample(browser: Any, server: ServerProcess, sample: str, done: str) -> Any:
    """Run the docs' first browser sample, then ``sample``, as one module on a page of the
    server; the value of ``done`` (a JavaScript expression) once it has run. No page errors."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.base}/")
    module = _docs_browser_sample() + sample + f"\nwindow.sampleDone = {done};\n"
    page.add_script_tag(content=module, type="module")
    page.wait_for_function("() => window.sampleDone", polling=20, timeout=EXPECT_TIMEOUT_MS)
    result = page.evaluate("() => window.sampleDone")
    context.close()
    assert errors == []
    return result


def test_the_browser_edit_sample_of_the_docs_runs_as_written_after_the_first(
    browser: Any, server: ServerProcess
) -> None:
    done = _run_after_the_first_sample(
        browser,
        server,
        _docs_browser_changes_sample(),
        "{ mid: note.mid, shown: shown.get(note.mid) }",
    )
    assert done["shown"]["body"] == "hello" and isinstance(done["shown"]["edited"], int)


def test_the_browser_unread_sample_of_the_docs_runs_as_written_after_the_first(
    browser: Any, server: ServerProcess
) -> None:
    blocks = re.findall(r"```js\n(.*?)```", DOCS.read_text(), re.S)
    [unread] = [block for block in blocks if "client.unread(" in block]
    done = _run_after_the_first_sample(
        browser, server, unread, "{ seq, reply, before: conversations }"
    )
    # The sample's own message never counts; the marker stops at the room's last seq.
    assert done["before"][0]["unread"] == 0
    assert done["reply"] == {"room": "lobby", "marker": done["seq"], "unread": 0, "mentions": 0}


# -- a restart with a drain: the hinted delay, the circuit kept closed, nothing missed ------------

RESTART_CLIENT_JS = """
async () => {
  const { ActorimClient } = await import("/static/actorim.js");
  const token = async () => (await (await fetch("/dev/token?user=dave")).json()).token;
  // Two failures in a row would open the circuit for a minute: the close 1012 and one refused
  // attempt, which a restart may cost. Only the restart grace keeps it closed.
  const client = new ActorimClient(`ws://${location.host}/ws`, {
    token, maxFailures: 2, backoff: { floor: 100, cap: 200 },
  });
  window.client = client;
  window.states = [];
  window.joins = [];
  window.messages = [];
  client.on("state", (change) => window.states.push(change));
  client.on("joined", (reply) => window.joins.push(reply));
  client.on("msg", (msg) => window.messages.push([msg.seq, msg.body]));
  await client.connect();
  await client.join("r");
  await client.send({ room: "r", body: "before" });
  return client.state;
}
"""


def test_a_restart_with_a_drain_waits_the_hinted_delay_and_the_browser_client_misses_nothing(
    browser: Any, tmp_path: Path
) -> None:
    spread = ("--drain-reconnect-spread", "3")
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", spread)
    server.start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.base}/")
        assert page.evaluate(RESTART_CLIENT_JS) == "CONNECTED"
        assert server.stop() == 0  # SIGTERM: drains (close 1012 with a hint) and exits
        page.wait_for_function("() => client.state !== 'CONNECTED'", polling=20, timeout=10_000)
        server.start()
        erin = Client(f"ws://127.0.0.1:{server.port}/ws")
        try:
            erin.connect(json.loads(http_get(f"{server.base}/dev/token?user=erin")[2])["token"])
            erin.ok("join", room="r")
            for n in range(3):
                erin.ok("send", room="r", body=f"meanwhile {n}")
        finally:
            erin.close()
        page.wait_for_function("() => joins.length === 2", polling=20, timeout=EXPECT_TIMEOUT_MS)
        sent = page.evaluate("async () => client.send({ room: 'r', body: 'after' })")
        page.wait_for_function("() => messages.length >= 5", polling=20, timeout=EXPECT_TIMEOUT_MS)
        received = page.evaluate("() => messages")
        states = page.evaluate(
            "() => states.map((s) => [s.state, s.code ?? null, s.reason ?? null, s.delay ?? null])"
        )
    finally:
        context.close()
        server.kill()
    assert sent["seq"] == 5
    # Erin's three between the client's own two, each once and in order ("after" went out on
    # the restored link, behind the recovery: nothing recovered may follow it).
    meanwhile = [[n + 2, f"meanwhile {n}"] for n in range(3)]
    assert received == [[1, "before"], *meanwhile, [5, "after"]]
    assert "CIRCUIT_OPEN" not in [state for state, _, _, _ in states], states
    [(_, _, reason, delay)] = [s for s in states if s[1] == 1012]
    hinted = restart_delay(1012, reason)
    assert hinted is not None, reason
    # The schedule the client recorded: the hinted delay plus its own back-off jitter (a link
    # younger than `stableAfter` counts as a failure: floor + random(0, 2 * floor), 100 to
    # 300 ms here).
    assert hinted * 1000 + 100 <= delay <= hinted * 1000 + 300, (hinted, delay)


BUSY_CLIENT_JS = """
() => {
  const { ActorimClient } = window.actorim;
  const token = async () => (await (await fetch("/dev/token?user=fay")).json()).token;
  // One failure would open the circuit for a minute: only the hint keeps it closed.
  const client = new ActorimClient(`ws://${location.host}/ws`, {
    token, maxFailures: 1, backoff: { floor: 100, cap: 200 },
  });
  window.client = client;
  window.states = [];
  client.on("state", (change) => window.states.push(change));
  window.connected = client.connect();
  return client.state;
}
"""


def test_a_busy_server_sends_the_browser_client_away_with_a_hint_and_it_comes_back_after_it(
    browser: Any, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", ("--max-setups", "2"))
    server.start()
    # Two connections upgraded and not connected: the server sets up as many as it may.
    holders = [Client(f"ws://127.0.0.1:{server.port}/ws") for _ in range(2)]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.base}/")
        page.evaluate("async () => { window.actorim = await import('/static/actorim.js'); }")
        page.evaluate(BUSY_CLIENT_JS)
        page.wait_for_function(
            "() => states.some((s) => s.code === 1013)", polling=20, timeout=EXPECT_TIMEOUT_MS
        )
        for holder in holders:
            holder.close()
        page.wait_for_function("() => client.state === 'CONNECTED'", timeout=EXPECT_TIMEOUT_MS)
        page.evaluate("async () => { await connected; await client.join('r'); }")
        sent = page.evaluate("async () => client.send({ room: 'r', body: 'in at last' })")
        states = page.evaluate(
            "() => states.map((s) => [s.state, s.code ?? null, s.reason ?? null, s.delay ?? null])"
        )
    finally:
        context.close()
        for holder in holders:
            holder.close()
        server.kill()
    assert sent["seq"] == 1
    assert "CIRCUIT_OPEN" not in [state for state, _, _, _ in states], states
    refusals = [s for s in states if s[1] == 1013]
    assert refusals, states
    for _, _, reason, delay in refusals:
        hinted = restart_delay(1013, reason)
        assert hinted is not None, reason
        # The hint, then the client's own back-off jitter (floor + random(0, ...), at most the
        # 200 ms cap above the floor).
        assert hinted * 1000 + 100 <= delay <= hinted * 1000 + 300, (hinted, delay)


# -- a connection refused for good ---------------------------------------------------------------

REPLACED_JS = """
async () => {
  const { ActorimClient } = await import("/static/actorim.js");
  const token = async () => (await (await fetch("/dev/token?user=erin")).json()).token;
  const url = `ws://${location.host}/ws`;
  const first = new ActorimClient(url, { token, backoff: { floor: 50, cap: 100 } });
  await first.connect();
  const changes = [];
  const ended = new Promise((resolve) => first.on("state", (change) => {
    changes.push([change.state, change.code ?? null, change.final ?? false]);
    if (change.final) resolve("ended");
  }));
  const pinged = first.ping().then(() => "answered", (err) => err.code);
  const second = new ActorimClient(url, { token });
  await second.connect();
  // A bound on the wait: without an answer the page reports it instead of hanging the test.
  const late = new Promise((resolve) => setTimeout(() => resolve("no end in 10 s"), 10000));
  const outcome = await Promise.race([ended, late]);
  await second.ping();
  const after = await first.ping().then(() => "answered", (err) => err.code);
  const states = { first: first.state, second: second.state };
  return { outcome, changes, pinged: await pinged, after, ...states };
}
"""


def test_a_client_replaced_by_a_newer_connection_of_its_user_stops_and_the_page_says_so(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    server = ServerProcess(
        tmp_path / "data", tmp_path / "server.log", ("--max-connections-per-user", "1")
    )
    server.start()
    errors: list[str] = []
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{server.base}/")
        out = page.evaluate(REPLACED_JS)
        context.close()
        # The chat page: signing in on a second page replaces the first page's connection,
        # which says why and stays down until asked; asked, it takes the slot back.
        first = _sign_in(browser, server.base, "erin", DESKTOP, errors)
        expect(first.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
        second = _sign_in(browser, server.base, "erin", DESKTOP, errors)
        expect(second.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
        expect(first.get_by_test_id("conn-state")).to_have_text("Disconnected")
        expect(first.get_by_test_id("conn-banner-text")).to_have_text(
            re.compile("^Disconnected: your account opened more connections elsewhere")
        )
        first.get_by_test_id("retry-now").click()
        expect(first.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
        expect(second.get_by_test_id("conn-state")).to_have_text("Disconnected")
    finally:
        server.kill()
    assert out == {
        "outcome": "ended",
        "changes": [["DISCONNECTED", 4009, True]],
        "pinged": "answered",
        "after": "replaced",
        "first": "DISCONNECTED",
        "second": "CONNECTED",
    }
    assert errors == []


GAP_CLIENT_JS = """
async () => {
  const { ActorimClient } = await import("/static/actorim.js");
  // A reconnect waits for its token until the test has made its gap (letBack).
  const back = new Promise((resolve) => { window.letBack = resolve; });
  let tokens = 0;
  const token = async () => {
    if (tokens++ > 0) await back;
    return (await (await fetch("/dev/token?user=gwen")).json()).token;
  };
  const client = new ActorimClient(`ws://${location.host}/ws`, {
    token, requestTimeout: 5000, backoff: { floor: 100, cap: 100 },
  });
  window.client = client;
  window.seqs = [];
  window.joins = [];
  client.on("msg", (msg) => window.seqs.push(msg.seq));
  client.on("joined", (reply) => window.joins.push(reply));
  await client.connect();
  await client.join("gap");
  return client.state;
}
"""

# 80 messages of 60 KB: 4.8 MB, more than the server's outbox holds (4 MiB), so a re-join
# cannot replay them and answers recovered: false.
GAP_MESSAGES = 80


def test_the_browser_client_fetches_a_gap_the_server_could_not_replay_from_history(
    browser: Any, shared_server: ServerProcess
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{shared_server.base}/")
    assert page.evaluate(GAP_CLIENT_JS) == "CONNECTED"
    _, _, body = http_get(f"{shared_server.base}/dev/token?user=hank")
    hank = Client(f"ws://127.0.0.1:{shared_server.port}/ws")
    try:
        hank.connect(json.loads(body)["token"])
        hank.ok("join", room="gap")
        hank.ok("send", room="gap", body="before")
        page.wait_for_function("() => seqs.length === 1", polling=20, timeout=10_000)
        page.evaluate("() => client._ws.close()")
        page.wait_for_function("() => client.state !== 'CONNECTED'", polling=20, timeout=10_000)
        for _ in range(GAP_MESSAGES):
            hank.ok("send", room="gap", body="x" * 60_000)
    finally:
        hank.close()
    page.evaluate("() => letBack()")
    page.wait_for_function("() => joins.length === 2", polling=20, timeout=10_000)
    rejoin = page.evaluate("() => joins[1]")
    assert (rejoin["resumed"], rejoin["recovered"], rejoin["seq"]) == (True, False, 81)
    # Pages are charged to the rate limit by their size: 4.8 MB take several seconds.
    page.wait_for_function(f"() => seqs.length >= {GAP_MESSAGES + 1}", polling=20, timeout=30_000)
    assert page.evaluate("() => seqs") == list(range(1, GAP_MESSAGES + 2))
    context.close()


SKIPPED_GAP_JS = """
async ([token, room]) => {
  const { ActorimClient } = await import("/static/actorim.js");
  const client = new ActorimClient(`ws://${location.host}/ws`, { token, requestTimeout: 5000 });
  window.client = client;
  window.seqs = [];
  window.gaps = [];
  client.on("msg", (msg) => window.seqs.push(msg.seq));
  client.on("gap", (gap) => window.gaps.push(gap));
  await client.connect();
  await client.join(room);
  return client.state;
}
"""


def test_the_browser_client_fetches_a_gap_the_room_skipped_from_history(
    browser: Any, redis_server: Any, tmp_path: Path
) -> None:
    spawn = Spawner(tmp_path)
    try:
        # Node B serves the page; its members miss messages while it is cut off from Redis.
        cluster = CutOff(redis_server(), spawn, b_args=("--allowed-origins", "*"))
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{cluster.b.http}/")
        token = TOKENS.mint("gwen")
        assert page.evaluate(SKIPPED_GAP_JS, [token, "skipped"]) == "CONNECTED"
        sender, _ = cluster.a.client("hank")
        try:
            sender.ok("join", room="skipped")
            [first] = send_to_room(sender, "skipped", ["before"])
            page.wait_for_function("() => seqs.length === 1", polling=20, timeout=10_000)
            cluster.deaf()
            missed = send_to_room(sender, "skipped", ["x" * LARGE_BODY] * SKIPPED_MESSAGES)
            cluster.hearing_but_not_reading()
            cluster.whole()
            page.wait_for_function("() => gaps.length === 1", polling=20, timeout=10_000)
            [live] = send_to_room(sender, "skipped", ["after the gap"])
        finally:
            sender.close()
        assert page.evaluate("() => gaps") == [
            {"t": "gap", "room": "skipped", "after": first, "seq": missed[-1]}
        ]
        page.wait_for_function(
            f"() => seqs.length >= {SKIPPED_MESSAGES + 2}", polling=20, timeout=30_000
        )
        assert sorted(page.evaluate("() => seqs")) == [first, *missed, live]
        assert page.evaluate("() => client.state") == "CONNECTED"
        context.close()
        cluster.close()
    finally:
        spawn.kill_all()


# -- the token lifecycle --------------------------------------------------------------------------

BROWSER_SECRET = "browser-test-secret-0123456789abcdef"  # what ServerProcess gives the server
TOKEN_ARGS = ("--token-refresh-notice", "3", "--token-expiry-grace", "0.5")

REFRESH_CLIENT_JS = """
async ([short, long, fixed]) => {
  const { ActorimClient } = await import("/static/actorim.js");
  const tokens = [short, long];
  window.calls = 0;
  const token = fixed ? short : async () => tokens[Math.min(window.calls++, 1)];
  const client = new ActorimClient(`ws://${location.host}/ws`, { token });
  window.client = client;
  window.refreshes = [];
  window.states = [];
  client.on("refresh", (event) => window.refreshes.push(event.exp));
  client.on("state", (change) => window.states.push([change.state, change.code ?? null,
                                                     change.final ?? false]));
  await client.connect();
  return client.session;
}
"""


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from _running(tmp_path, TOKEN_ARGS)


def short_and_long_tokens(user: str) -> list[str]:
    from actorim.domain.auth import TokenAuthority

    authority = TokenAuthority(BROWSER_SECRET)
    return [authority.mint(user, ttl_s=short_ttl_s()), authority.mint(user, ttl_s=3600)]


def test_the_browser_client_refreshes_through_its_token_function_and_keeps_its_connection(
    browser: Any, token_server: ServerProcess
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{token_server.base}/")
    short, long = short_and_long_tokens("fay")  # once the page is there: the short one is short
    session = page.evaluate(REFRESH_CLIENT_JS, [short, long, False])
    # Holds the short token and does not refresh: its close marks that token's end.
    idle = Client(f"ws://127.0.0.1:{token_server.port}/ws")
    idle.connect(short)
    assert idle.wait_closed(timeout=10).code == 4001
    idle.close()
    page.evaluate("async () => client.ping()")
    out = page.evaluate("() => ({ session: client.session, calls, refreshes, states })")
    context.close()
    assert out["session"] == session, "the client reconnected instead of refreshing"
    assert out["calls"] == 2 and len(out["refreshes"]) == 1
    assert [state for state, _, _ in out["states"]] == ["CONNECTING", "CONNECTED"]


def test_the_browser_client_with_a_fixed_token_stops_when_the_token_expires(
    browser: Any, token_server: ServerProcess
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{token_server.base}/")
    short, _ = short_and_long_tokens("gus")
    page.evaluate(REFRESH_CLIENT_JS, [short, short, True])
    page.wait_for_function(
        "() => client.state === 'DISCONNECTED'", polling=20, timeout=EXPECT_TIMEOUT_MS
    )
    states = page.evaluate("() => states")
    context.close()
    assert states[-1] == ["DISCONNECTED", 4001, True], states


# -- edits and deletes in the browser client ------------------------------------------------------

CHANGES_CLIENT_JS = """
async () => {
  const { ActorimClient } = await import("/static/actorim.js");
  const token = async () => (await (await fetch("/dev/token?user=ivy")).json()).token;
  const client = new ActorimClient(`ws://${location.host}/ws`, { token, requestTimeout: 5000 });
  window.client = client;
  window.seen = [];
  for (const t of ["msg", "edit", "delete"]) client.on(t, (e) => window.seen.push(e));
  await client.connect();
  await client.join("changes");
  return client.state;
}
"""


def test_the_browser_client_edits_deletes_and_gets_each_change_once_across_a_reconnect(
    browser: Any, shared_server: ServerProcess
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{shared_server.base}/")
    assert page.evaluate(CHANGES_CLIENT_JS) == "CONNECTED"
    _, _, body = http_get(f"{shared_server.base}/dev/token?user=hank")
    hank = Client(f"ws://127.0.0.1:{shared_server.port}/ws")
    try:
        hank.connect(json.loads(body)["token"])
        hank.ok("join", room="changes")
        theirs = hank.ok("send", room="changes", body="hank's")
        # The page's own send, edit and delete: each answered, each drawn from its event.
        mine = page.evaluate(
            """async () => {
              const sent = await client.send({ room: "changes", body: "ivy's" });
              const edited = await client.edit(sent.mid, "ivy's, edited");
              await client.delete(sent.mid);
              return { sent, edited };
            }"""
        )
        assert mine["edited"]["mid"] == mine["sent"]["mid"]
        assert mine["edited"]["room"] == "changes"
        page.wait_for_function("() => seen.length === 4", polling=20, timeout=10_000)
        page.evaluate("() => client._ws.close()")
        page.wait_for_function("() => client.state !== 'CONNECTED'", polling=20, timeout=10_000)
        hank.ok("edit", mid=theirs["mid"], body="hank's, edited while ivy was away")
        hank.ok("delete", mid=theirs["mid"])
        page.wait_for_function("() => client.state === 'CONNECTED'", polling=20, timeout=15_000)
        hank.ok("send", room="changes", body="after")
    finally:
        hank.close()
    page.wait_for_function("() => seen.length === 7", polling=20, timeout=10_000)
    seen = page.evaluate("() => seen.map((e) => [e.t, e.seq, e.body ?? null, !!e.deleted])")
    assert seen == [
        ["msg", 1, "hank's", False],
        ["msg", 2, "ivy's", False],
        ["edit", 3, "ivy's, edited", False],
        ["delete", 4, None, False],
        # Replayed after its message was deleted: the edit's body is erased too.
        ["edit", 5, None, True],
        ["delete", 6, None, False],
        ["msg", 7, "after", False],
    ]
    refused = page.evaluate(
        f"""async () => {{
          try {{ await client.edit({json.dumps(theirs["mid"])}, "not mine"); return null; }}
          catch (err) {{ return err.code; }}
        }}"""
    )
    assert refused == "forbidden"
    context.close()


def test_on_the_chat_page_an_author_edits_and_deletes_and_the_other_page_follows(
    browser: Any, shared_server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    ann, bob = _ann_and_bob_in(browser, shared_server.base, "edits", errors)
    _say(ann, "helo everyone")
    _say(bob, "bob was here")
    expect(_bodies(bob, "helo everyone")).to_have_count(1)
    expect(_bodies(ann, "bob was here")).to_have_count(1)
    mine = ann.get_by_test_id("message").filter(has=_bodies(ann, "helo everyone"))
    theirs = bob.get_by_test_id("message").filter(has=_bodies(bob, "helo everyone"))
    # Only one's own messages offer edit and delete.
    expect(ann.get_by_test_id("edit-message")).to_have_count(1)
    expect(theirs.get_by_test_id("edit-message")).to_have_count(0)

    mine.get_by_test_id("edit-message").click()
    expect(ann.get_by_test_id("composer-input")).to_have_value("helo everyone")
    ann.get_by_test_id("composer-input").fill("hello everyone")
    ann.get_by_test_id("composer-input").press("Enter")
    for page in (ann, bob):
        expect(_bodies(page, "hello everyone")).to_have_count(1)
        expect(_bodies(page, "helo everyone")).to_have_count(0)
        edited = page.get_by_test_id("message").filter(has=_bodies(page, "hello everyone"))
        expect(edited.get_by_test_id("edited")).to_have_text("(edited)")
    expect(ann.get_by_test_id("composer-send")).to_have_text("Send")

    ann.once("dialog", lambda dialog: dialog.accept())
    ann.get_by_test_id("message").filter(has=_bodies(ann, "hello everyone")).get_by_test_id(
        "delete-message"
    ).click()
    for page in (ann, bob):
        expect(_bodies(page, "Message deleted")).to_have_count(1)
        expect(_bodies(page, "hello everyone")).to_have_count(0)
    # A page opened afterwards shows the message as it is now, from history.
    carol = _sign_in(browser, shared_server.base, "carol", DESKTOP, errors)
    carol.get_by_test_id("join-room").fill("edits")
    carol.get_by_test_id("join-submit").click()
    expect(_bodies(carol, "Message deleted")).to_have_count(1)
    expect(_bodies(carol, "bob was here")).to_have_count(1)
    assert errors == []


# -- reactions in the browser client --------------------------------------------------------------

REACTIONS_CLIENT_JS = CHANGES_CLIENT_JS.replace(
    '"msg", "edit", "delete"', '"msg", "reaction"'
).replace('"changes"', '"reactions"')


def test_the_browser_client_reacts_and_gets_each_reaction_once_across_a_reconnect(
    browser: Any, shared_server: ServerProcess
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{shared_server.base}/")
    assert page.evaluate(REACTIONS_CLIENT_JS) == "CONNECTED"
    _, _, body = http_get(f"{shared_server.base}/dev/token?user=hank")
    hank = Client(f"ws://127.0.0.1:{shared_server.port}/ws")
    try:
        hank.connect(json.loads(body)["token"])
        hank.ok("join", room="reactions")
        theirs = hank.ok("send", room="reactions", body="hank's")
        # The page's own reaction is drawn from its event; a repeat changes nothing.
        mine = page.evaluate(
            f"""async () => {{
              const mid = {json.dumps(theirs["mid"])};
              const on = await client.react(mid, "👍");
              const again = await client.react(mid, "👍");
              return {{ on, again }};
            }}"""
        )
        assert (mine["on"]["mid"], mine["on"]["seq"], mine["on"]["room"]) == (
            theirs["mid"],
            2,
            "reactions",
        )
        assert mine["again"]["unchanged"] is True and mine["again"]["seq"] == 2
        page.wait_for_function("() => seen.length === 2", polling=20, timeout=10_000)
        page.evaluate("() => client._ws.close()")
        page.wait_for_function("() => client.state !== 'CONNECTED'", polling=20, timeout=10_000)
        hank.ok("react", mid=theirs["mid"], key="👍", on=True)
        hank.ok("react", mid=theirs["mid"], key="🎉", on=True)
        page.wait_for_function("() => client.state === 'CONNECTED'", polling=20, timeout=15_000)
        hank.ok("send", room="reactions", body="after")
    finally:
        hank.close()
    page.wait_for_function("() => seen.length === 5", polling=20, timeout=10_000)
    seen = page.evaluate("() => seen.map((e) => [e.t, e.seq, e.key ?? null, e.user ?? null])")
    assert seen == [
        ["msg", 1, None, None],
        ["reaction", 2, "👍", "ivy"],
        ["reaction", 3, "👍", "hank"],
        ["reaction", 4, "🎉", "hank"],
        ["msg", 5, None, None],
    ]
    context.close()


def test_on_the_chat_page_reaction_chips_count_and_a_click_toggles_ones_own(
    browser: Any, shared_server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    ann, bob = _ann_and_bob_in(browser, shared_server.base, "chips", errors)
    _say(ann, "lunch at noon?")
    expect(_bodies(bob, "lunch at noon?")).to_have_count(1)

    def chip(page: Any) -> Any:
        message = page.get_by_test_id("message").filter(has=_bodies(page, "lunch at noon?"))
        return message.get_by_test_id("reaction")

    # Bob reacts from the message's quick reaction; both pages show one chip, bob's marked.
    bob.get_by_test_id("message").filter(has=_bodies(bob, "lunch at noon?")).get_by_test_id(
        "react-message"
    ).click()
    for page, me in ((ann, "false"), (bob, "true")):
        expect(chip(page)).to_have_count(1)
        expect(chip(page)).to_have_text("👍 1")
        expect(chip(page)).to_have_attribute("data-me", me)
    # Ann clicks the chip: she joins in.
    chip(ann).click()
    for page in (ann, bob):
        expect(chip(page)).to_have_text("👍 2")
    expect(chip(ann)).to_have_attribute("data-me", "true")
    # Bob clicks it again: his own reaction goes, ann's stays.
    chip(bob).click()
    for page, me in ((ann, "true"), (bob, "false")):
        expect(chip(page)).to_have_text("👍 1")
        expect(chip(page)).to_have_attribute("data-me", me)
    # Another page of ann's opened afterwards counts from history, and knows which are hers.
    ann_again = _sign_in(browser, shared_server.base, "ann", DESKTOP, errors)
    ann_again.get_by_test_id("join-room").fill("chips")
    ann_again.get_by_test_id("join-submit").click()
    expect(chip(ann_again)).to_have_text("👍 1")
    expect(chip(ann_again)).to_have_attribute("data-me", "true")
    chip(ann).click()
    for page in (ann, bob, ann_again):
        expect(chip(page)).to_have_count(0)
    assert errors == []


# -- replies and threads in the browser client ----------------------------------------------------

THREADS_CLIENT_JS = CHANGES_CLIENT_JS.replace('"msg", "edit", "delete"', '"msg"').replace(
    '"changes"', '"threads"'
)


def test_the_browser_client_replies_in_a_thread_and_pages_it(
    browser: Any, server: ServerProcess
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.base}/")
    assert page.evaluate(THREADS_CLIENT_JS) == "CONNECTED"
    _, _, body = http_get(f"{server.base}/dev/token?user=hank")
    hank = Client(f"ws://127.0.0.1:{server.port}/ws")
    try:
        hank.connect(json.loads(body)["token"])
        hank.ok("join", room="threads")
        root = hank.ok("send", room="threads", body="lunch?")["mid"]
        # The page's own reply: answered with its thread, and drawn from its msg event.
        mine = page.evaluate(
            f"""async () => {{
              const root = {json.dumps(root)};
              const reply = await client.send({{ room: "threads", body: "yes", reply_to: root }});
              let refused = null;
              try {{
                await client.send({{ room: "threads", body: "x", reply_to: "00000000000000000x" }});
              }} catch (err) {{
                refused = err.code;
              }}
              return {{ reply, refused }};
            }}"""
        )
        assert (mine["reply"]["thread"], mine["refused"]) == (root, "not_found")
        hank.ok("send", room="threads", body="where?", reply_to=mine["reply"]["mid"])
        page.wait_for_function("() => seen.length === 3", polling=20, timeout=10_000)
        seen = page.evaluate(
            "() => seen.map((e) => [e.body, e.reply_to ?? null, e.thread ?? null])"
        )
        assert seen == [
            ["lunch?", None, None],
            ["yes", root, root],
            ["where?", mine["reply"]["mid"], root],
        ]
        thread = page.evaluate(
            f"""async () => {{
              const first = await client.thread({json.dumps(root)}, {{ limit: 1 }});
              const before = first.messages[0].seq;
              const older = await client.thread({json.dumps(root)}, {{ before }});
              return {{ first, older }};
            }}"""
        )
    finally:
        hank.close()
    first, older = thread["first"], thread["older"]
    assert first["root"]["thread"]["count"] == 2 and first["more"] is True
    assert [m["body"] for m in first["messages"]] == ["where?"]
    assert ([m["body"] for m in older["messages"]], older["more"]) == (["yes"], False)
    context.close()


def test_on_the_chat_page_replies_go_to_a_thread_panel_opened_from_the_roots_link(
    browser: Any, server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    ann, bob = _ann_and_bob_in(browser, server.base, "threads", errors)
    _say(ann, "lunch at noon?")
    expect(_bodies(bob, "lunch at noon?")).to_have_count(1)

    def main_list(page: Any) -> Any:
        return page.get_by_test_id("message-list")

    def panel(page: Any) -> Any:
        return page.get_by_test_id("thread-panel")

    def link(page: Any) -> Any:
        return main_list(page).get_by_test_id("thread-link")

    def reply_in_thread(page: Any, text: str) -> None:
        page.get_by_test_id("thread-input").fill(text)
        page.get_by_test_id("thread-input").press("Enter")

    # Bob replies from the message's action: the panel opens on its thread.
    main_list(bob).get_by_test_id("message").filter(
        has=_bodies(bob, "lunch at noon?")
    ).get_by_test_id("reply-message").click()
    expect(panel(bob)).to_be_visible()
    expect(panel(bob).get_by_test_id("thread-root")).to_contain_text("lunch at noon?")
    reply_in_thread(bob, "yes, the usual place")
    # The reply shows in the thread, not in the conversation; the root counts it on both pages.
    expect(panel(bob).get_by_test_id("thread-list").get_by_test_id("message")).to_have_count(1)
    for page in (ann, bob):
        expect(link(page)).to_have_text("1 reply")
        expect(main_list(page).get_by_test_id("message")).to_have_count(1)
    expect(panel(ann)).to_be_hidden()
    # Ann opens the thread from the link and answers bob's reply; bob's open panel follows.
    link(ann).click()
    expect(_bodies(ann, "yes, the usual place")).to_have_count(1)
    panel(ann).get_by_test_id("thread-list").get_by_test_id("reply-message").click()
    expect(ann.get_by_test_id("thread-replying")).to_contain_text("Replying to bob")
    reply_in_thread(ann, "see you there")
    expect(ann.get_by_test_id("thread-replying")).to_be_hidden()
    expect(_bodies(bob, "see you there")).to_have_count(1)
    quote = panel(bob).get_by_test_id("message").filter(has=_bodies(bob, "see you there"))
    expect(quote.get_by_test_id("reply-quote")).to_contain_text("bob: yes, the usual place")
    for page in (ann, bob):
        expect(link(page)).to_have_text("2 replies")
    # Bob deletes his reply: the count follows; a page opened afterwards reads it from history.
    bob.once("dialog", lambda dialog: dialog.accept())
    panel(bob).get_by_test_id("message").filter(
        has=_bodies(bob, "yes, the usual place")
    ).get_by_test_id("delete-message").click()
    for page in (ann, bob):
        expect(link(page)).to_have_text("1 reply")
    carol = _sign_in(browser, server.base, "carol", DESKTOP, errors)
    carol.get_by_test_id("join-room").fill("threads")
    carol.get_by_test_id("join-submit").click()
    expect(link(carol)).to_have_text("1 reply")
    expect(main_list(carol).get_by_test_id("message")).to_have_count(1)
    link(carol).click()
    expect(panel(carol).get_by_test_id("thread-list").get_by_test_id("message")).to_have_count(2)
    expect(_bodies(carol, "see you there")).to_have_count(1)
    expect(_bodies(carol, "Message deleted")).to_have_count(1)
    carol.get_by_test_id("thread-close").click()
    expect(panel(carol)).to_be_hidden()
    assert errors == []


# -- lasting membership on the chat page ----------------------------------------------------------


def test_on_the_chat_page_rooms_come_from_the_inbox_the_directory_finds_them_and_titles_follow(
    browser: Any, quick_presence_server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    server = quick_presence_server
    errors: list[str] = []
    ann = _sign_in(browser, server.base, "ann", DESKTOP, errors)
    _join(ann, "garden")
    # Carol belongs to the room but is away: the member list greys her out.
    carol = _sign_in(browser, server.base, "carol", DESKTOP, errors)
    _join(carol, "garden")
    expect(ann.locator('[data-testid="member"][data-user="carol"]')).to_have_count(1)
    carol.context.close()
    away = ann.locator('[data-testid="member"][data-user="carol"]')
    expect(away).to_have_attribute("data-status", "offline")
    expect(ann.locator('[data-testid="member"][data-user="ann"]')).to_have_attribute(
        "data-status", "online"
    )
    # Ann gives the room a title and a topic.
    ann.get_by_test_id("edit-room").click()
    ann.get_by_test_id("room-title-input").fill("The Garden")
    ann.get_by_test_id("room-topic-input").fill("plants and such")
    ann.get_by_test_id("room-edit-save").click()
    expect(ann.get_by_test_id("conv-title")).to_have_text("The Garden")
    expect(ann.get_by_test_id("conv-topic")).to_have_text("plants and such")
    # Bob finds the room in the directory by its title and joins it from there.
    bob = _sign_in(browser, server.base, "bob", DESKTOP, errors)
    expect(bob.get_by_test_id("conn-state")).to_have_attribute("data-state", "CONNECTED")
    bob.get_by_test_id("browse-rooms").click()
    bob.get_by_test_id("directory-query").fill("GARDEN")
    bob.get_by_test_id("directory-search").click()
    found = bob.locator('[data-testid="directory-room"][data-room="garden"]')
    expect(found).to_contain_text("The Garden")
    found.get_by_test_id("directory-join").click()
    expect(bob.get_by_test_id("conv-title")).to_have_text("The Garden")
    expect(bob.get_by_test_id("conv-topic")).to_have_text("plants and such")
    # A change of topic reaches bob's page.
    ann.get_by_test_id("edit-room").click()
    ann.get_by_test_id("room-topic-input").fill("and trees")
    ann.get_by_test_id("room-edit-save").click()
    expect(bob.get_by_test_id("conv-topic")).to_have_text("and trees")
    # Ann on a new device (nothing saved in its browser): the room list comes from the inbox.
    laptop = _sign_in(browser, server.base, "ann", DESKTOP, errors)
    item = laptop.locator('[data-testid="room-item"][data-room="garden"]')
    expect(item).to_contain_text("The Garden")
    _say(ann, "hello from the phone")
    _open(laptop, "room-item", "garden")
    expect(_bodies(laptop, "hello from the phone")).to_have_count(1)
    assert errors == []


def test_the_chat_page_badges_unread_messages_and_a_read_on_one_page_clears_the_other(
    browser: Any, server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    desk = _sign_in(browser, server.base, "ann", DESKTOP, errors)
    laptop = _sign_in(browser, server.base, "ann", DESKTOP, errors)
    bob = _sign_in(browser, server.base, "bob", DESKTOP, errors)
    for page in (desk, laptop, bob):
        _join(page, "marks")
    expect(bob.get_by_test_id("member")).to_have_count(2)
    # Both of ann's pages look at another room while bob writes in this one.
    for page in (desk, laptop):
        page.get_by_test_id("join-room").fill("elsewhere")
        page.get_by_test_id("join-submit").click()
        expect(page.get_by_test_id("conv-title")).to_have_text("# elsewhere")

    def badge(page: Any) -> Any:
        return page.locator('[data-testid="room-item"][data-room="marks"]').get_by_test_id("unread")

    _say(bob, "one")
    _say(bob, "two, @ann")
    for page in (desk, laptop):
        expect(badge(page)).to_have_text("2")
        expect(badge(page)).to_have_attribute("data-mentions", "1")
    # Ann reads on the desk: its badge goes, and so does the laptop's.
    _open(desk, "room-item", "marks")
    expect(_bodies(desk, "two, @ann")).to_have_count(1)
    expect(badge(desk)).to_have_count(0)
    expect(badge(laptop)).to_have_count(0)
    # A page opened afterwards asks the server: nothing unread, until bob writes again.
    again = _sign_in(browser, server.base, "ann", DESKTOP, errors)
    _join(again, "marks")
    again.get_by_test_id("join-room").fill("elsewhere")
    again.get_by_test_id("join-submit").click()
    expect(again.get_by_test_id("conv-title")).to_have_text("# elsewhere")
    _open(desk, "room-item", "elsewhere")
    expect(desk.get_by_test_id("conv-title")).to_have_text("# elsewhere")
    _say(bob, "three")
    for page in (desk, laptop, again):
        expect(badge(page)).to_have_text("1")
    # A page that shows the room when a message arrives reads it: every badge goes.
    _open(laptop, "room-item", "marks")
    _say(bob, "four")
    expect(_bodies(laptop, "four")).to_have_count(1)
    for page in (desk, again):
        expect(badge(page)).to_have_count(0)
    # Read up to "four", so the next message makes one unread, not two.
    _open(laptop, "room-item", "elsewhere")
    expect(laptop.get_by_test_id("conv-title")).to_have_text("# elsewhere")
    _say(bob, "five")
    for page in (desk, laptop, again):
        expect(badge(page)).to_have_text("1")
    assert errors == []
