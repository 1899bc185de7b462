"""``actorim chat`` run as a user runs it: a child process reading typed lines on its stdin,
against a real server in development mode, talking with a Python client."""

from __future__ import annotations

import doctest
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest

import actorim.tools.chat
from actorim.cli import main
from actorim.client import Client, LinkState, StateChange
from actorim.domain.auth import TokenAuthority
from actorim.tools.chat import Chat, endpoints
from tests.support import RunningNode, ServerProcess

WAIT = 10.0  # seconds; the child starts in about half a second


class ChatProcess:
    """``python -m actorim chat ...``; :meth:`type` a line, :meth:`expect` a printed line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actorim", "chat", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, text: str) -> str:
        """The next printed line containing ``text`` (lines before it are kept in ``lines``)."""
        assert self.proc.stdout is not None
        with gevent.Timeout(WAIT, AssertionError(f"no line with {text!r}; got {self.lines}")):
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"the chat ended before {text!r}; got {self.lines}")
                self.lines.append(line.rstrip("\n"))
                if text in line:
                    return self.lines[-1]

    def exit_code(self) -> int:
        return self.proc.wait(timeout=WAIT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def chats() -> Iterator[list[ChatProcess]]:
    started: list[ChatProcess] = []
    yield started
    for chat in started:
        chat.kill()


class Inbox:
    def __init__(self, client: Client) -> None:
        self.items: list[dict[str, Any]] = []
        self._changed = gevent.event.Event()
        client.on("*", self._add)

    def _add(self, event: dict[str, Any]) -> None:
        self.items.append(event)
        self._changed.set()

    def next(self, t: str, **match: Any) -> dict[str, Any]:
        with gevent.Timeout(WAIT, AssertionError(f"no {t} {match}; got {self.items}")):
            while True:
                for event in self.items:
                    if event["t"] == t and all(event.get(k) == v for k, v in match.items()):
                        self.items.remove(event)
                        return event
                self._changed.clear()
                self._changed.wait()


@pytest.mark.process
def test_the_terminal_chat_joins_talks_lists_members_and_quits(
    server: RunningNode, chats: list[ChatProcess]
) -> None:
    alice = ChatProcess(server.http, "--user", "alice")
    chats.append(alice)
    alice.expect("* connected as alice")
    alice.type("/join lobby")
    assert alice.expect("* joined lobby") == "* joined lobby (1 here: alice)"
    with Client(server.url, server.token("bob")) as bob:
        inbox = Inbox(bob)
        bob.join("lobby")
        alice.expect("* bob joined lobby")
        bob.send(room="lobby", body="hi alice")
        assert alice.expect("bob:") == "[lobby] bob: hi alice"
        alice.type("hello bob")
        assert inbox.next("msg", room="lobby")["body"] == "hello bob"
        alice.type("/dm bob just you and me")
        dm = inbox.next("msg", to="bob")
        assert (dm["from"], dm["body"]) == ("alice", "just you and me")
        bob.send(to="alice", body="likewise")
        assert alice.expect("likewise") == "[dm] bob: likewise"
        alice.type("/who")
        assert alice.expect("* lobby:") == "* lobby: alice (online), bob (online)"
        alice.type("/who carol")
        assert alice.expect("carol") == "* carol is offline"
        alice.type("helo bob")
        typo = inbox.next("msg", room="lobby", body="helo bob")
        alice.type("/edit hello again bob")
        edit = inbox.next("edit", room="lobby")
        assert (edit["mid"], edit["body"]) == (typo["mid"], "hello again bob")
        alice.expect("* your last message was edited")
        alice.type("/delete")
        assert inbox.next("delete", room="lobby")["mid"] == typo["mid"]
        alice.expect("* your last message was deleted")
        mine = bob.send(room="lobby", body="so long")
        bob.edit(mine.mid, "see you")
        assert alice.expect("edited") == "[lobby] bob edited: see you"
        bob.delete(mine.mid)
        assert alice.expect("deleted") == "[lobby] bob deleted a message"
        alice.type("/delete")
        alice.expect("! /delete: send a message in a room first")
        alice.type("/reply @bob nice")
        alice.expect("! /reply: nothing from bob in lobby")
        question = bob.send(room="lobby", body="tea?")
        alice.expect("tea?")
        alice.type("/reply yes please")
        answer = inbox.next("msg", room="lobby", body="yes please")
        assert (answer["reply_to"], answer["thread"]) == (question.mid, question.mid)
        alice.expect("* replied to bob in lobby")
        milk = bob.send(room="lobby", body="milk?", reply_to=answer["mid"])
        assert alice.expect("milk?") == "[lobby] bob (re alice): milk?"
        alice.type("/reply @bob no thanks")
        assert inbox.next("msg", room="lobby", body="no thanks")["thread"] == question.mid
        # /react answers bob's last message; the same key again takes it back.
        alice.type("/react @bob +1")
        added = inbox.next("reaction", room="lobby")
        assert (added["mid"], added["key"], added["on"]) == (milk.mid, "+1", True)
        alice.expect("* reacted +1 on bob's message in lobby")
        alice.type("/react @bob +1")
        assert inbox.next("reaction", room="lobby")["on"] is False
        alice.expect("* took back +1 on bob's message in lobby")
        bob.react(milk.mid, "tea")
        assert alice.expect("reacted tea") == "[lobby] bob reacted tea on bob's message"
        alice.type("/react")
        alice.expect("! usage: /react [@USER] KEY, in a room")
        alice.type("/leave")
        assert alice.expect("* left") == "* left lobby"
        assert inbox.next("member", user="alice")["state"] == "left"
        alice.type("anyone?")
        alice.expect("! join a room first")
        alice.type("/nonsense")
        alice.expect("! unknown command /nonsense")
        alice.type("/quit")
        assert alice.exit_code() == 0


@pytest.mark.process
def test_a_moderator_kicks_and_mutes_from_the_chat_and_the_user_reads_why(
    server: RunningNode, chats: list[ChatProcess]
) -> None:
    server.node.set_role("lobby", "mo", "moderator")
    mo = ChatProcess(server.http, "--user", "mo")
    bo = ChatProcess(server.http, "--user", "bo")
    chats.extend([mo, bo])
    for chat in (mo, bo):
        chat.expect("* connected as")
        chat.type("/join lobby")
        chat.expect("* joined lobby")
    mo.type("/mute bo too loud")
    mo.expect("* mute bo in lobby: done")
    assert bo.expect("muted you") == "* mo muted you in lobby: too loud"
    bo.type("let me speak")
    assert bo.expect("! ").startswith("! muted: you are muted in room 'lobby'")
    mo.type("/kick bo")
    assert bo.expect("removed you") == "* mo removed you from lobby"
    bo.type("/join lobby")
    bo.expect("* joined lobby")
    bo.type("/kick mo")
    assert bo.expect("! ").startswith("! not_moderator:")
    mo.type("/kick")
    mo.expect("! usage: /kick USER [REASON], in a room")


@pytest.mark.process
def test_the_chat_speaks_json_and_takes_a_token(
    server: RunningNode, chats: list[ChatProcess]
) -> None:
    carol = ChatProcess(server.url, "--token", server.token("carol"), "--json")
    chats.append(carol)
    carol.expect("* connected as carol")
    carol.type("/join r")
    carol.expect("* joined r")
    carol.type("in json")
    assert carol.proc.stdin is not None
    carol.proc.stdin.close()  # the end of input ends the chat too
    assert carol.exit_code() == 0
    with Client(server.url, server.token("dave")) as dave:
        dave.join("r")
        assert [m["body"] for m in dave.history("r")["messages"]] == ["in json"]


@pytest.mark.process
def test_a_refused_token_ends_the_chat_with_the_reason(
    server: RunningNode, chats: list[ChatProcess]
) -> None:
    chat = ChatProcess(server.http, "--token", "not-a-token")
    chats.append(chat)
    chat.expect("! the server refused the token")
    assert chat.exit_code() == 1


def test_the_chat_needs_a_user_or_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["chat", "http://127.0.0.1:1"])
    assert exited.value.code == 2
    assert "--user NAME" in capsys.readouterr().err


def test_server_addresses_are_understood_in_every_usual_form() -> None:
    assert doctest.testmod(actorim.tools.chat).failed == 0
    assert endpoints("127.0.0.1:8080") == ("ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080")
    assert endpoints("ws://h:1/ws") == ("ws://h:1/ws", "http://h:1")
    assert endpoints("https://chat.example/") == ("wss://chat.example/ws", "https://chat.example")
    with pytest.raises(ValueError, match="not a server URL"):
        endpoints("ftp://h")


@pytest.mark.process
def test_after_a_restart_the_chat_says_when_it_reconnects_and_comes_back(
    tmp_path: Path, chats: list[ChatProcess]
) -> None:
    secret = "chat-test-secret-0123456789abcdef01234"
    server = ServerProcess(tmp_path / "data", secret=secret)
    server.start()
    try:
        token = TokenAuthority(secret).mint("alice")
        alice = ChatProcess(server.url, "--token", token)
        chats.append(alice)
        alice.expect("* connected as alice")
        alice.type("/join lobby")
        alice.expect("* joined lobby")
        server.terminate()  # SIGTERM: drains with close 1012, exits
        line = alice.expect("* the server is restarting")
        assert re.fullmatch(r"\* the server is restarting; reconnecting in \d+\.\d s", line), line
        server.start()
        alice.expect("* connected as alice")
        assert not any("unreachable" in seen for seen in alice.lines), alice.lines
        alice.type("back again")
        alice.type("/quit")
        assert alice.exit_code() == 0
        with Client(server.url, TokenAuthority(secret).mint("bob")) as bob:
            bob.join("lobby")
            assert [m["body"] for m in bob.history("lobby")["messages"]] == ["back again"]
    finally:
        server.stop()


def test_an_open_circuit_is_announced_with_the_time_of_the_next_try() -> None:
    out = io.StringIO()
    client = Client("ws://127.0.0.1:1/ws", "token")
    chat = Chat(client, out)
    connecting, circuit_open = LinkState.CONNECTING, LinkState.CIRCUIT_OPEN
    chat.on_state(StateChange(connecting, circuit_open, "6 failures in a row", retry_in=12.4))
    chat.on_state(StateChange(connecting, circuit_open, "trial failed", retry_in=2.34))
    chat.on_state(StateChange(connecting, circuit_open, "trial failed"))
    assert out.getvalue().splitlines() == [
        "* the server is unreachable (6 failures in a row); trying again in 12 s",
        "* the server is unreachable (trial failed); trying again in 2.3 s",
        "* the server is unreachable (trial failed); trying again later",
    ]
    client.close()


def test_a_link_a_busy_server_sent_away_is_announced_with_the_time_of_the_next_try() -> None:
    out = io.StringIO()
    client = Client("ws://127.0.0.1:1/ws", "token")
    chat = Chat(client, out)
    chat.on_state(StateChange(LinkState.CONNECTING, LinkState.CONNECTED, "connected"))
    reason = "the link ended (1013: try again later; reconnect in 2400 ms)"
    chat.on_state(StateChange(LinkState.CONNECTED, LinkState.CONNECTING, reason, retry_in=2.6))
    assert out.getvalue().splitlines()[-1] == "* the server is busy; reconnecting in 2.6 s"
    client.close()
