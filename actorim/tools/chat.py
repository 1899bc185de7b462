"""``actorim chat``: a line-based terminal chat on :class:`actorim.client.Client`.

Lines typed are commands (``/join``, ``/leave``, ``/dm``, ``/who``, ``/reply``, ``/react``,
``/quit``, ``/help``) or text for the current room; messages print as they arrive, one per line
(``[lobby] alice: hi``; a reply ``[lobby] bob (re alice): yes``). Lines starting with ``*``
are news (joins, presence, the link's state), lines starting with ``!`` are errors.

The token is given (``--token``) or, against a server in development mode, fetched from
``/dev/token?user=NAME`` each time the client needs a fresh one.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any, TextIO

import gevent

from actorim.client import (
    Client,
    ClientClosed,
    ClientError,
    LinkState,
    RequestTimeout,
    StateChange,
)
from actorim.protocol.restart import (
    RESTART_CLOSE_CODE,
    TRY_AGAIN_LATER,
    TRY_AGAIN_LATER_CODE,
    restart_delay,
)

__all__ = ["HELP", "Chat", "dev_token", "endpoints", "run"]

HELP = """\
commands:
  /join ROOM        join ROOM and make it the current room
  /leave [ROOM]     leave ROOM (default: the current room)
  /dm USER TEXT     send TEXT to USER alone
  /who [ROOM|USER]  who is in ROOM (default: the current room), or whether USER is online
  /reply [@USER] TEXT  reply to the last message in the current room (USER's last one),
                    in its thread
  /react [@USER] KEY  react with KEY to the last message in the current room (USER's last
                    one); again to take it back
  /edit TEXT        replace your last message in the current room with TEXT
  /delete           delete your last message in the current room
  /kick USER [WHY]  as a moderator: remove USER from the current room (also /ban, /unban,
                    /mute, /unmute)
  /quit             leave the chat
any other line is sent to the current room"""

DEV_TOKEN_TIMEOUT_S = 5.0
"""Longest a request for a development token may take."""

AUTHORS_KEPT = 1000
"""Messages whose author the chat remembers, to say whom a reply answers (the latest ones)."""


def endpoints(url: str) -> tuple[str, str]:
    """The WebSocket URL and the HTTP base of a server given as ``http(s)://host[:port]``,
    ``ws(s)://host[:port][/ws]`` or ``host:port``.

    >>> endpoints("http://localhost:8080")
    ('ws://localhost:8080/ws', 'http://localhost:8080')
    >>> endpoints("wss://chat.example/ws")
    ('wss://chat.example/ws', 'https://chat.example')
    """
    if "://" not in url:
        url = f"http://{url}"
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"not a server URL: {url!r} (use http://host:port or ws://host:port/ws)")
    path = parts.path if parts.scheme in ("ws", "wss") and parts.path not in ("", "/") else "/ws"
    ws_url = f"{'wss' if secure else 'ws'}://{parts.netloc}{path}"
    return ws_url, f"{'https' if secure else 'http'}://{parts.netloc}"


def dev_token(http_base: str, user: str) -> Callable[[], str]:
    """A token source for a server in development mode: asks ``/dev/token`` every time."""
    query = urllib.parse.urlencode({"user": user})
    url = f"{http_base}/dev/token?{query}"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=DEV_TOKEN_TIMEOUT_S) as response:
            return str(json.load(response)["token"])

    return fetch


def _text(body: Any) -> str:
    if isinstance(body, str):
        return body
    return json.dumps(body, default=repr, ensure_ascii=False)


class Chat:
    """The terminal's state and rendering; :meth:`handle` runs one typed line."""

    def __init__(self, client: Client, out: TextIO) -> None:
        self.client = client
        self.out = out
        self.current: str | None = None
        self.members: dict[str, set[str]] = {}
        # Room -> the mid of this user's last message there, for /edit and /delete.
        self.last_sent: dict[str, str] = {}
        # Room -> {user: the mid of their last message there}, in the order they spoke last,
        # for /reply; and the author of each recent message, to say whom a reply answers.
        self.last_heard: dict[str, dict[str, str]] = {}
        self.authors: dict[str, str] = {}
        # The (mid, key) reactions this chat made, so /react of one again takes it back.
        self.reacted: set[tuple[str, str]] = set()
        self._was_connected = False

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # -- what arrives --------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        t = event.get("t")
        if t == "msg":
            self._heard(event)
            self.say(self._render(event))
        elif t == "member":
            room, user = event.get("room", ""), event.get("user", "")
            members = self.members.setdefault(room, set())
            if event.get("state") == "joined":
                members.add(user)
            else:
                members.discard(user)
            self.say(f"* {user} {event.get('state')} {room}")
        elif t in ("edit", "delete"):
            if t == "delete":
                self._forget(event.get("mid"))
            self.say(self._render_change(event))
        elif t == "reaction":
            where = f"[{event['room']}]" if "room" in event else "[dm]"
            author = self.authors.get(event.get("mid", ""))
            whose = f"{author}'s message" if author else "a message"
            verb = "reacted" if event.get("on") else "took back"
            self.say(f"{where} {event.get('user')} {verb} {event.get('key')} on {whose}")
        elif t == "presence":
            self.say(f"* {event.get('user')} is {event.get('status')}")
        elif t == "rejoined":
            room = event.get("room", "")
            self.members[room] = set(event.get("members") or ())
            if not event.get("recovered", True):
                self.say(f"* some messages in {room} were missed while away")
        elif t == "gap":
            # The client pages the skipped messages from history: they are printed as they come.
            room, after, seq = event.get("room", ""), event.get("after"), event.get("seq")
            if isinstance(after, int) and isinstance(seq, int):
                count = seq - after
                self.say(f"* {count} messages in {room} were missed; fetching them from history")
        elif t == "moderation":
            self.say(_moderation_line(event))
        elif t == "error":
            error = event.get("error") or {}
            self.say(f"! {error.get('code')}: {error.get('message')}")

    def _heard(self, msg: dict[str, Any]) -> None:
        """Remember who wrote ``msg`` (the newest ``AUTHORS_KEPT``), and in a room that it is
        the last word of its author there."""
        mid, sender = msg.get("mid"), msg.get("from")
        if not isinstance(mid, str) or not isinstance(sender, str):
            return
        self.authors[mid] = sender
        if len(self.authors) > AUTHORS_KEPT:
            del self.authors[next(iter(self.authors))]
        room = msg.get("room")
        if isinstance(room, str):
            spoken = self.last_heard.setdefault(room, {})
            spoken.pop(sender, None)
            spoken[sender] = mid

    def _forget(self, mid: Any) -> None:
        """A deleted message can be replied to no more."""
        for spoken in self.last_heard.values():
            for user, last in list(spoken.items()):
                if last == mid:
                    del spoken[user]

    def _render(self, msg: dict[str, Any]) -> str:
        sender = msg.get("from")
        text = _text(msg.get("body"))
        if "reply_to" in msg:
            sender = f"{sender} (re {self.authors.get(msg['reply_to'], 'an earlier message')})"
        if "room" in msg:
            return f"[{msg['room']}] {sender}: {text}"
        if msg.get("to") == self.client.user:
            return f"[dm] {sender}: {text}"
        return f"[dm to {msg.get('to')}] {sender}: {text}"

    def _render_change(self, change: dict[str, Any]) -> str:
        where = f"[{change['room']}]" if "room" in change else "[dm]"
        if change.get("t") == "delete":
            return f"{where} {change.get('by')} deleted a message"
        if change.get("deleted"):
            return f"{where} {change.get('by')} edited a message deleted since"
        return f"{where} {change.get('by')} edited: {_text(change.get('body'))}"

    def on_state(self, change: StateChange) -> None:
        state = change.state
        if state is LinkState.CONNECTED:
            self._was_connected = True
            self.say(f"* connected as {self.client.user}")
        elif state is LinkState.CONNECTING:
            if self._was_connected and change.previous is LinkState.CONNECTED:
                reason = change.reason
                if TRY_AGAIN_LATER in reason and restart_delay(TRY_AGAIN_LATER_CODE, reason):
                    # Sent away by a server too busy to set the link up again (1013): the
                    # client waits its hint, then comes back and resumes.
                    self.say(f"* the server is busy; reconnecting{_when(change.retry_in)}")
                elif restart_delay(RESTART_CLOSE_CODE, reason) is not None:
                    # A drain, not a failure: the server said when to come back.
                    self.say(f"* the server is restarting; reconnecting{_when(change.retry_in)}")
                else:
                    self.say(f"* reconnecting{_when(change.retry_in)} ({change.reason})")
        elif state is LinkState.CIRCUIT_OPEN:
            when = _when(change.retry_in) or " later"
            self.say(f"* the server is unreachable ({change.reason}); trying again{when}")
        else:
            self.say(f"* disconnected ({change.reason})")

    # -- what is typed -------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Run one line; False when the chat should end."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            self._say_in_room(line)
            return True
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name in ("quit", "exit"):
            return False
        command = _COMMANDS.get(name)
        if command is None:
            self.say(f"! unknown command /{name}; /help lists them")
            return True
        try:
            command(self, rest)
        except ClientError as exc:
            self.say(f"! {exc}")
        return True

    def _say_in_room(self, text: str) -> None:
        if self.current is None:
            self.say("! join a room first: /join ROOM")
            return
        try:
            sent = self.client.send(room=self.current, body=text)
        except ClientError as exc:
            self.say(f"! {exc}")
        else:
            self._sent(self.current, sent.mid)

    def _sent(self, room: str, mid: str) -> None:
        assert self.client.user is not None
        self.last_sent[room] = mid
        self._heard({"mid": mid, "from": self.client.user, "room": room})

    def _heard_last(self, rest: str, usage: str) -> tuple[str, str, str] | None:
        """For ``/reply`` and ``/react``: the room, the mid of the last message in the current
        room (or of ``@USER``'s last one there) and the rest of the line; None (said why)."""
        user = None
        if rest.startswith("@"):
            user, _, rest = rest[1:].partition(" ")
            rest = rest.strip()
        room = self.current
        if room is None or not rest:
            self.say(f"! usage: {usage}, in a room")
            return None
        spoken = self.last_heard.get(room, {})
        mid = spoken.get(user) if user else next(reversed(spoken.values()), None)
        if mid is None:
            command = usage.split(" ", 1)[0]
            self.say(f"! {command}: nothing from {user or 'anyone'} in {room} to answer yet")
            return None
        return room, mid, rest

    def _reply(self, rest: str) -> None:
        """Reply to the last message in the current room, or to ``@USER``'s last one there."""
        found = self._heard_last(rest, "/reply [@USER] TEXT")
        if found is None:
            return
        room, mid, text = found
        sent = self.client.send(room=room, body=text, reply_to=mid)
        self._sent(room, sent.mid)
        self.say(f"* replied to {self.authors.get(mid, 'them')} in {room}")

    def _react(self, rest: str) -> None:
        """React with a key to the last message in the current room (or ``@USER``'s last one);
        the same key again takes the reaction back, as a second click on a chip does."""
        found = self._heard_last(rest, "/react [@USER] KEY")
        if found is None:
            return
        room, mid, key = found
        on = (mid, key) not in self.reacted
        self.client.react(mid, key, on)
        if on:
            self.reacted.add((mid, key))
        else:
            self.reacted.discard((mid, key))
        whose = self.authors.get(mid, "them")
        done = "reacted" if on else "took back"
        self.say(f"* {done} {key} on {whose}'s message in {room}")

    def _last_mine(self, usage: str) -> str | None:
        """The mid of this user's last message in the current room, or None (said why)."""
        room = self.current
        mid = self.last_sent.get(room) if room is not None else None
        if mid is None:
            self.say(f"! {usage}: send a message in a room first")
        return mid

    def _edit(self, rest: str) -> None:
        if not rest:
            self.say("! usage: /edit TEXT")
            return
        mid = self._last_mine("/edit")
        if mid is not None:
            self.client.edit(mid, rest)
            self.say("* your last message was edited")

    def _delete(self, rest: str) -> None:
        mid = self._last_mine("/delete")
        if mid is not None:
            self.client.delete(mid)
            assert self.current is not None
            del self.last_sent[self.current]
            self._forget(mid)
            self.say("* your last message was deleted")

    def _join(self, rest: str) -> None:
        if not rest:
            self.say("! usage: /join ROOM")
            return
        data = self.client.join(rest)
        members = set(data.get("members") or ())
        self.members[rest] = members
        self.current = rest
        self.say(f"* joined {rest} ({len(members)} here: {', '.join(sorted(members))})")

    def _leave(self, rest: str) -> None:
        room = rest or self.current
        if room is None:
            self.say("! usage: /leave ROOM")
            return
        self.client.leave(room)
        self.members.pop(room, None)
        if self.current == room:
            self.current = next(iter(self.client.rooms), None)
        self.say(f"* left {room}" + (f"; now in {self.current}" if self.current else ""))

    def _dm(self, rest: str) -> None:
        user, _, text = rest.partition(" ")
        if not user or not text.strip():
            self.say("! usage: /dm USER TEXT")
            return
        self.client.send(to=user, body=text.strip())

    def _who(self, rest: str) -> None:
        target = rest or self.current
        if target is None:
            self.say("! usage: /who ROOM or /who USER")
            return
        if target in self.members:
            users = sorted(self.members[target])
            statuses = self.client.presence(users) if users else {}
            listing = ", ".join(f"{u} ({statuses.get(u, 'unknown')})" for u in users)
            self.say(f"* {target}: {listing or 'nobody'}")
            return
        users = target.split()
        statuses = self.client.presence(users)
        for user in users:
            self.say(f"* {user} is {statuses.get(user, 'unknown')}")

    def _moderate(self, action: str, rest: str) -> None:
        user, _, reason = rest.partition(" ")
        if not user or self.current is None:
            self.say(f"! usage: /{action} USER [REASON], in a room")
            return
        self.client.moderate(self.current, action, user=user, reason=reason.strip() or None)
        self.say(f"* {action} {user} in {self.current}: done")

    def _help(self, rest: str) -> None:
        self.say(HELP)


_DONE_TO_YOU = {
    "kick": "removed you from",
    "ban": "banned you from",
    "unban": "lifted your ban in",
    "mute": "muted you in",
    "unmute": "unmuted you in",
    "delete": "deleted your message in",
}


_USER_ACTIONS = ("kick", "ban", "unban", "mute", "unmute")
"""The moderation actions the chat offers as commands, each against a user."""


def _moderation_command(action: str, chat: Chat, rest: str) -> None:
    chat._moderate(action, rest)


def _moderation_line(event: dict[str, Any]) -> str:
    """What a ``moderation`` event tells the user, as a line.

    >>> _moderation_line({"action": "mute", "room": "lobby", "by": "mo", "reason": "calm"})
    '* mo muted you in lobby: calm'
    """
    action, room, by = event.get("action"), event.get("room"), event.get("by")
    if action == "role":
        return f"* you are now {event.get('role')} of {room}"
    done = _DONE_TO_YOU.get(str(action), f"{action}:")
    reason = event.get("reason")
    return f"* {by} {done} {room}" + (f": {reason}" if reason else "")


_COMMANDS: dict[str, Callable[[Chat, str], None]] = {
    "join": Chat._join,
    "leave": Chat._leave,
    "dm": Chat._dm,
    "who": Chat._who,
    "reply": Chat._reply,
    "react": Chat._react,
    "edit": Chat._edit,
    "delete": Chat._delete,
    "help": Chat._help,
    **{
        action: partial(_moderation_command, action)
        for action in _DONE_TO_YOU
        if action != "delete"
    },
}


def _when(seconds: float | None) -> str:
    """`` in 3 s`` (tenths below ten seconds), or nothing when the time is not known."""
    if seconds is None:
        return ""
    return f" in {seconds:.1f} s" if seconds < 10 else f" in {seconds:.0f} s"


def _read_line(stream: TextIO) -> str:
    """One line of ``stream``, read in a thread so that the other greenlets keep running."""
    return str(gevent.get_hub().threadpool.apply(stream.readline))


def run(
    url: str,
    *,
    user: str | None = None,
    token: str | None = None,
    json_frames: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Chat until ``/quit`` or the end of input; returns the exit status."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    ws_url, http_base = endpoints(url)
    source: str | Callable[[], str]
    if token is not None:
        source = token
    elif user is not None:
        source = dev_token(http_base, user)
    else:
        raise ValueError("give --user NAME (a server in development mode) or --token TOKEN")
    client = Client(ws_url, source, json_frames=json_frames, buffer_events=False)
    chat = Chat(client, stdout)
    client.on("*", chat.on_event)
    client.on_state(chat.on_state)
    chat.say(f"* connecting to {ws_url}; /help lists the commands")
    try:
        client.connect()
    except ClientClosed as exc:  # a refused token, or a connection refused for good
        chat.say(f"! {exc}")
        client.close()
        return 1
    except RequestTimeout as exc:
        chat.say(f"! {exc}")
    try:
        while True:
            line = _read_line(stdin)
            if not line or not chat.handle(line):
                break
    finally:
        client.close()
    return 0
