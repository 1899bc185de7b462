"""Every setting of a node: its name, default, environment variable, flag and meaning, in one table.

The table is the single source for ``Config`` defaults, ``Config.from_env``, the flags of
``actorim serve`` (and so ``actorim serve --help``) and docs/operations.md. A setting is read from
its flag, else from its environment variable, else its default.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast

from actorim.domain.admission import DEFAULT_MAX_SETUPS
from actorim.domain.apikeys import ApiKeys
from actorim.domain.auth import MIN_SECRET_BYTES, weak_secret
from actorim.domain.markers import DEFAULT_MAX_MENTIONS, DEFAULT_UNREAD_COUNT_MAX
from actorim.domain.messages import DEFAULT_MAX_REACTIONS
from actorim.domain.origins import origin_of
from actorim.domain.push import (
    DEFAULT_PUSH_PREVIEW,
    DEFAULT_PUSH_WINDOW_S,
    PREVIEWS,
    Preview,
    PushPolicy,
)
from actorim.domain.ratelimit import DEFAULT_TYPING_THROTTLE_S, DEFAULT_TYPING_TTL_S
from actorim.domain.webhooks import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_BACKOFF_CAP_S,
    DEFAULT_MAX_ATTEMPTS,
    Endpoint,
    endpoints_json,
    parse_endpoints,
)
from actorim.protocol.limits import HISTORY_PAGE_MAX_BYTES, MESSAGE_MAX_BYTES
from actorim.protocol.restart import MAX_RESTART_DELAY_S

__all__ = [
    "SETTINGS",
    "Config",
    "Setting",
    "add_flags",
    "config_environment",
    "config_from",
    "invalid_setting",
]


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    env: str = ""

    @property
    def env_var(self) -> str:
        return self.env or "ACTORIM_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    msg = f"expected a boolean (1/0, true/false), got {text!r}"
    raise ValueError(msg)


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


KIB = 1024
MIB = 1024 * KIB

SETTINGS: tuple[Setting, ...] = (
    # -- listening
    Setting("host", "127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)"),
    Setting("port", 8080, "TCP port to listen on (falls back to $PORT)", int, env="PORT"),
    Setting(
        "workers",
        1,
        "worker processes sharing the port; more than 1 needs REDIS_URL",
        int,
        env="WEB_CONCURRENCY",
    ),
    Setting(
        "reuse_port",
        False,
        "bind with SO_REUSEPORT, so that several processes share the port (set for --workers)",
        _bool,
    ),
    Setting(
        "port_file",
        "",
        "once listening, write the bound port to this file (with --port 0: how whoever started "
        "the server learns the port the kernel picked)",
    ),
    Setting("node_id", "", "this node's name in replies and logs (default: host name and pid)"),
    # -- security
    Setting(
        "secret",
        "",
        f"HS256 secret that signs tokens, {MIN_SECRET_BYTES} bytes or more (required unless --dev)",
    ),
    Setting(
        "dev",
        False,
        "development mode: /dev/token endpoint; without a secret, one generated and kept in "
        "data_dir",
        _bool,
    ),
    Setting(
        "allowed_origins",
        (),
        "browser origins allowed besides public_url's (comma-separated, '*' allows any)",
        _list,
    ),
    Setting(
        "public_url",
        "",
        "the URL browsers load this server's page from (https://chat.example.com); its origin "
        "may open WebSockets. Outside --dev no other origin may, unless in allowed_origins",
    ),
    Setting(
        "login_url",
        "",
        "the application's sign-in page, where the chat page sends people who are not signed in "
        "(outside --dev); it may hand back a token as /#token=... (empty: no sign-in link)",
    ),
    Setting(
        "token_url",
        "",
        'a path on this page\'s origin (behind the same proxy) answering {"token": ...} for '
        "the person signed in to the application: the chat page signs in and refreshes its "
        "token through it (empty: tokens come by URL fragment, message or paste only)",
    ),
    Setting(
        "fault_injection", False, "accept the debug.crash command (chaos drills, tests)", _bool
    ),
    # -- storage
    Setting(
        "data_dir", "var", "directory of the SQLite message store (and of --dev's generated secret)"
    ),
    Setting("store", "sqlite", "message store: sqlite (durable), memory (lost on exit)"),
    Setting("store_sync", "FULL", "SQLite synchronous mode: FULL (survives power loss) or NORMAL"),
    Setting("retention_count", 10_000, "messages kept per room and conversation", int),
    Setting("retention_days", 30.0, "days a message is kept", float),
    Setting(
        "store_max_pending",
        10_000,
        "sends (and, counted apart, receipts) waiting for the store before they answer overloaded",
        int,
    ),
    # 500 receipts are about 3 ms of SQL in one transaction (measured with SQLite, FULL), while
    # a commit per receipt costs about 0.25 ms each (its fsync): a send waits at most ~3 ms.
    Setting(
        "receipts_per_commit",
        500,
        "most ack/read receipts one store commit takes; the rest wait for the next, so sends "
        "never queue behind a flood of receipts",
        int,
    ),
    Setting("prune_interval", 60.0, "seconds between retention sweeps of the store", float),
    Setting("history_max_limit", 100, "largest page a history command may ask for", int),
    # A day: long enough to fix a typo noticed the next morning, short enough that an old
    # conversation is not rewritten under its readers. Deleting has no window.
    Setting(
        "edit_window",
        86_400.0,
        "seconds after sending during which the author may edit a message (0: always)",
        float,
    ),
    # Reactions: a palette of emoji per message, few enough that a history page stays small
    # (each message lists at most this many keys).
    Setting(
        "max_reactions",
        DEFAULT_MAX_REACTIONS,
        "most different reaction keys one message may carry; a new key beyond them is refused"
        " with too_many_reactions",
        int,
    ),
    # Unread counts: where counting stops (clients show "999+"), so a count never reads more
    # than this many messages of a conversation.
    Setting(
        "unread_count_max",
        DEFAULT_UNREAD_COUNT_MAX,
        "where unread and mention counts stop (a count at it means this many or more); no count"
        " reads more than this many messages of a conversation",
        int,
    ),
    Setting(
        "max_mentions",
        DEFAULT_MAX_MENTIONS,
        "most users one send may list in mentions (more is refused with too_many_mentions);"
        " @names in the text beyond it are not counted",
        int,
    ),
    # A screenful of conversations many times over; a client with more asks in pages.
    Setting(
        "unread_max_conversations",
        500,
        "most conversations (rooms and with together) one unread command may ask about",
        int,
    ),
    # Counting is bounded per conversation, so an unread command costs its connection by the
    # conversations it names: one of 500 costs 25 tokens, a quarter of a second's allowance.
    Setting(
        "unread_conversations_per_token",
        20,
        "an unread command costs its connection one rate-limit token per this many conversations",
        int,
    ),
    # A quarter of outbox_max_bytes: a page always fits a client's outbox beside live traffic,
    # and 100 chat messages of a few hundred bytes (the largest limit) fit it many times over.
    # A smaller outbox lowers it to match (see ``Config.history_page_bytes``).
    Setting(
        "history_max_bytes",
        HISTORY_PAGE_MAX_BYTES,
        "largest encoded history page in bytes (at most a quarter of outbox_max_bytes): a page "
        "is cut there and answers more: true",
        int,
    ),
    # 8 KiB a token: at the default rate of 100 tokens a second a connection pulls history at
    # up to 800 KiB/s (a burst of 1.6 MiB), while a page of 100 chat messages (~20 KiB) costs
    # two or three commands' worth.
    Setting(
        "history_bytes_per_token",
        8 * KIB,
        "a history reply costs its connection one rate-limit token per this many bytes",
        int,
    ),
    # -- cluster
    Setting(
        "redis_url",
        "",
        "Redis URL: set it to run several nodes as one cluster; redis:// (one server), "
        "redis+cluster://host:port,host:port (Redis Cluster) or "
        "redis+sentinel://host:port,host:port/master-name (Sentinel); rediss for TLS",
        env="REDIS_URL",
    ),
    Setting(
        "redis_min_replicas",
        0,
        "Redis replicas that must confirm a message (WAIT) before its send is acknowledged; "
        "0 acknowledges once the master has it",
        int,
    ),
    Setting(
        "redis_wait_timeout",
        0.5,
        "seconds a send waits for redis_min_replicas replicas before it is answered overloaded",
        float,
    ),
    Setting("redis_namespace", "actorim", "prefix of every Redis key and channel of the cluster"),
    Setting(
        "node_timeout",
        15.0,
        "seconds after which a node that stopped refreshing its liveness is declared dead and "
        "its users offline",
        float,
    ),
    Setting(
        "redis_heartbeat",
        1.0,
        "seconds between pings of Redis; two missed pings open the link's circuit breaker",
        float,
    ),
    # -- connections and limits
    Setting(
        "max_frame_size",
        MESSAGE_MAX_BYTES,
        "largest WebSocket message in bytes (then close 1009)",
        int,
    ),
    # -- the WebSocket read path: what one client may cost before and after its upgrade
    Setting(
        "handshake_timeout",
        10.0,
        "seconds a client has to send its whole HTTP request head (then 408 and close)",
        float,
    ),
    Setting(
        "max_header_bytes",
        16 * KIB,
        "bytes all request header lines may take together (then 431)",
        int,
    ),
    Setting(
        "max_handshakes",
        512,
        "connections in their request head at once; past it the oldest is dropped for the new one",
        int,
    ),
    Setting(
        "max_setups",
        DEFAULT_MAX_SETUPS,
        "connections setting up at once (upgraded, connect not yet answered); past it a new one "
        "is closed at once with 1013 and a hint of when to come back",
        int,
    ),
    Setting(
        "max_fragments", 64, "most frames one WebSocket message may be split into (then 1009)", int
    ),
    Setting(
        "frame_rate",
        500.0,
        "WebSocket frames (data and control) per second parsed per connection; more wait in TCP",
        float,
    ),
    Setting("frame_burst", 1000.0, "frames a connection may send at once before frame_rate", float),
    Setting(
        "frames_per_read",
        64,
        "most frames parsed for one connection before the server turns to other sockets",
        int,
    ),
    Setting(
        "closing_read_limit",
        64 * KIB,
        "bytes read from a client after the server's close frame before the socket is shut",
        int,
    ),
    Setting("connect_timeout", 10.0, "seconds a new connection has to send connect", float),
    Setting("heartbeat", 25.0, "seconds between server pings", float),
    Setting("idle_timeout", 60.0, "seconds without any frame (pongs included) before close", float),
    Setting(
        "close_timeout",
        5.0,
        "seconds a close may wait on a peer that stopped reading before the socket is cut (one "
        "waiting for its turn on a busy node is not cut: it keeps its code and reason)",
        float,
    ),
    Setting(
        "token_refresh_notice",
        60.0,
        "seconds before a connection's token expires that the server sends the refresh event",
        float,
    ),
    Setting(
        "token_expiry_grace",
        30.0,
        "seconds past a connection's token exp before it is closed 4001 unless refreshed",
        float,
    ),
    Setting(
        "revocation_keep",
        7 * 86400.0,
        "seconds a token revocation is kept when the caller does not say when its tokens expire",
        float,
    ),
    Setting("rate", 100.0, "commands per second per connection (token bucket rate)", float),
    Setting("burst", 200.0, "commands a connection may send in a burst", float),
    Setting(
        "rate_abuse_rejections",
        200,
        "rate_limited replies within rate_abuse_window before the connection is closed 1008",
        int,
    ),
    Setting(
        "rate_abuse_window", 10.0, "seconds over which rate_limited replies are counted", float
    ),
    Setting(
        "max_rooms_per_user",
        1000,
        "rooms one user may be a member of (a join past it is refused with too_many_rooms)",
        int,
    ),
    Setting(
        "inbox_limit",
        100,
        "conversations the connect reply lists, and most a conversations page holds",
        int,
    ),
    Setting("directory_limit", 100, "most rooms a rooms (directory) page holds", int),
    Setting(
        "max_connections_per_user",
        20,
        "connections one user may hold at once on a node; past it, a new one replaces the one"
        " heard from least recently (close 4009)",
        int,
    ),
    Setting("max_members_per_room", 10_000, "connections one room may hold", int),
    Setting(
        "member_events_limit",
        200,
        "rooms with more members than this do not announce joins and leaves (each would go to "
        "every member)",
        int,
    ),
    Setting(
        "member_list_limit",
        200,
        "most member ids a join reply lists (members_total gives the full count), and most "
        "members a members page holds",
        int,
    ),
    Setting(
        "moderation_reason_max",
        500,
        "characters a moderation reason may have (kick, ban, mute, delete; at most 1000)",
        int,
    ),
    Setting("audit_page_max", 100, "most entries one page of a room's audit log holds", int),
    Setting(
        "erase_limit",
        500,
        "most messages one erase of a user's messages deletes (the answer says more: call again)",
        int,
    ),
    Setting("outbox_max_frames", 2_000, "frames queued to a slow client before close 1013", int),
    Setting("outbox_max_bytes", 4 * MIB, "bytes queued to a slow client before close 1013", int),
    Setting(
        "backlog_page_messages",
        200,
        "offline direct messages sent per page at connect; the next page follows once the client "
        "has taken this one (at most half of outbox_max_frames)",
        int,
    ),
    Setting(
        "backlog_page_bytes",
        256 * KIB,
        "bytes of offline direct messages per page at connect (at least one message; at most "
        "half of outbox_max_bytes)",
        int,
    ),
    Setting(
        "replay_max_messages",
        1_000,
        "most missed messages a join with since replays (a longer gap answers recovered: false "
        "and the client pages history), and a room's repair of its own fan-out sends at once "
        "(beyond it: a gap event)",
        int,
    ),
    Setting(
        "replay_max_bytes",
        1 * MIB,
        "most bytes of missed messages a join with since replays (then recovered: false) and a "
        "room's repair sends at once (then a gap event)",
        int,
    ),
    Setting(
        "presence_grace", 5.0, "seconds before a disconnected user is announced offline", float
    ),
    Setting(
        "typing_throttle",
        DEFAULT_TYPING_THROTTLE_S,
        "seconds between two typing indicators relayed for one user in one conversation (the "
        "others are answered but not relayed)",
        float,
    ),
    Setting(
        "typing_ttl",
        DEFAULT_TYPING_TTL_S,
        "seconds a typing indicator lasts without a renewal (its ttl_ms); more than "
        "typing_throttle",
        float,
    ),
    # -- server API (/api/v1, docs/api.md)
    Setting(
        "api_keys",
        (),
        "server API keys, as sha256:<hex> hash lines from `actorim api-key` (comma-separated; "
        "several at once to rotate). None: the API answers 404",
        _list,
    ),
    Setting("api_rate", 20.0, "server API requests per second per key (token bucket rate)", float),
    Setting("api_burst", 100.0, "server API requests a key may make in a burst", float),
    Setting("api_max_body", 64 * KIB, "bytes of a server API request body (more: 413)", int),
    # -- hooks (docs/embedding.md)
    Setting(
        "hook_timeout",
        2.0,
        "seconds an application hook (before_publish, on_connect, on_disconnect) may take; "
        "then it failed (before_publish: the message is refused with internal)",
        float,
    ),
    # -- webhooks (docs/webhooks.md)
    Setting(
        "webhooks",
        (),
        'webhook endpoints, a JSON list of {"url", "secret", "events"?} (events: the types '
        "wanted, all but push.needed when left out); none: no outbox is kept",
        parse_endpoints,
    ),
    Setting(
        "webhook_max_attempts",
        DEFAULT_MAX_ATTEMPTS,
        "deliveries of an event to an endpoint before it moves to the dead-letter queue",
        int,
    ),
    Setting(
        "webhook_backoff_base",
        DEFAULT_BACKOFF_BASE_S,
        "seconds: retry n waits a random time up to min(cap, base * 2^(n-1))",
        float,
    ),
    Setting("webhook_backoff_cap", DEFAULT_BACKOFF_CAP_S, "seconds: the longest retry wait", float),
    Setting("webhook_timeout", 10.0, "seconds a webhook request may take (then it failed)", float),
    Setting("webhook_concurrency", 4, "webhook requests in flight at once to one endpoint", int),
    Setting(
        "webhook_poll",
        1.0,
        "seconds between two looks at the outbox for due deliveries (the most a new event "
        "waits before its first delivery starts)",
        float,
    ),
    Setting(
        "webhook_lease",
        60.0,
        "seconds a claimed delivery is this node's; past it another node (or this one after a "
        "restart) takes it over. More than webhook_timeout",
        float,
    ),
    Setting(
        "webhook_breaker_failures",
        5,
        "failed requests in a row that open an endpoint's circuit breaker",
        int,
    ),
    Setting(
        "webhook_breaker_cooldown",
        30.0,
        "seconds an endpoint's open circuit waits before one trial request",
        float,
    ),
    # -- offline push (docs/webhooks.md, push.needed)
    Setting(
        "push_window",
        DEFAULT_PUSH_WINDOW_S,
        "seconds: messages to one offline user within one window make one push.needed (the "
        "clock is cut into windows of this length); it is decided presence_grace after its "
        "window ends",
        float,
    ),
    Setting(
        "push_preview",
        DEFAULT_PUSH_PREVIEW,
        "what a push.needed shows of its message: none, sender (who wrote it) or full (sender "
        "and body)",
    ),
    # -- operations
    Setting("drain_seconds", 5.0, "on SIGTERM, seconds over which connections are closed", float),
    Setting(
        "drain_reconnect_spread",
        5.0,
        "seconds over which a drained node's clients are told to come back: each close (1012) "
        "carries a delay drawn uniformly from 0 to this",
        float,
    ),
    Setting("log_json", False, "log one JSON object per line", _bool),
    Setting("log_level", "INFO", "logging level"),
    Setting("block_threshold", 0.1, "seconds the hub may be blocked before it is reported", float),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """A node's settings; build one with keywords, ``Config.from_env()`` or :func:`config_from`."""

    host: str = _BY_NAME["host"].default
    port: int = _BY_NAME["port"].default
    workers: int = _BY_NAME["workers"].default
    reuse_port: bool = _BY_NAME["reuse_port"].default
    port_file: str = _BY_NAME["port_file"].default
    node_id: str = _BY_NAME["node_id"].default
    secret: str = _BY_NAME["secret"].default
    dev: bool = _BY_NAME["dev"].default
    allowed_origins: tuple[str, ...] = _BY_NAME["allowed_origins"].default
    public_url: str = _BY_NAME["public_url"].default
    login_url: str = _BY_NAME["login_url"].default
    token_url: str = _BY_NAME["token_url"].default
    fault_injection: bool = _BY_NAME["fault_injection"].default
    data_dir: str = _BY_NAME["data_dir"].default
    store: str = _BY_NAME["store"].default
    store_sync: str = _BY_NAME["store_sync"].default
    retention_count: int = _BY_NAME["retention_count"].default
    retention_days: float = _BY_NAME["retention_days"].default
    store_max_pending: int = _BY_NAME["store_max_pending"].default
    receipts_per_commit: int = _BY_NAME["receipts_per_commit"].default
    prune_interval: float = _BY_NAME["prune_interval"].default
    history_max_limit: int = _BY_NAME["history_max_limit"].default
    edit_window: float = _BY_NAME["edit_window"].default
    max_reactions: int = _BY_NAME["max_reactions"].default
    unread_count_max: int = _BY_NAME["unread_count_max"].default
    max_mentions: int = _BY_NAME["max_mentions"].default
    unread_max_conversations: int = _BY_NAME["unread_max_conversations"].default
    unread_conversations_per_token: int = _BY_NAME["unread_conversations_per_token"].default
    history_max_bytes: int = _BY_NAME["history_max_bytes"].default
    history_bytes_per_token: int = _BY_NAME["history_bytes_per_token"].default
    redis_url: str = _BY_NAME["redis_url"].default
    redis_namespace: str = _BY_NAME["redis_namespace"].default
    redis_min_replicas: int = _BY_NAME["redis_min_replicas"].default
    redis_wait_timeout: float = _BY_NAME["redis_wait_timeout"].default
    node_timeout: float = _BY_NAME["node_timeout"].default
    redis_heartbeat: float = _BY_NAME["redis_heartbeat"].default
    max_frame_size: int = _BY_NAME["max_frame_size"].default
    handshake_timeout: float = _BY_NAME["handshake_timeout"].default
    max_header_bytes: int = _BY_NAME["max_header_bytes"].default
    max_handshakes: int = _BY_NAME["max_handshakes"].default
    max_setups: int = _BY_NAME["max_setups"].default
    max_fragments: int = _BY_NAME["max_fragments"].default
    frame_rate: float = _BY_NAME["frame_rate"].default
    frame_burst: float = _BY_NAME["frame_burst"].default
    frames_per_read: int = _BY_NAME["frames_per_read"].default
    closing_read_limit: int = _BY_NAME["closing_read_limit"].default
    connect_timeout: float = _BY_NAME["connect_timeout"].default
    heartbeat: float = _BY_NAME["heartbeat"].default
    idle_timeout: float = _BY_NAME["idle_timeout"].default
    close_timeout: float = _BY_NAME["close_timeout"].default
    token_refresh_notice: float = _BY_NAME["token_refresh_notice"].default
    token_expiry_grace: float = _BY_NAME["token_expiry_grace"].default
    revocation_keep: float = _BY_NAME["revocation_keep"].default
    rate: float = _BY_NAME["rate"].default
    burst: float = _BY_NAME["burst"].default
    rate_abuse_rejections: int = _BY_NAME["rate_abuse_rejections"].default
    rate_abuse_window: float = _BY_NAME["rate_abuse_window"].default
    max_rooms_per_user: int = _BY_NAME["max_rooms_per_user"].default
    inbox_limit: int = _BY_NAME["inbox_limit"].default
    directory_limit: int = _BY_NAME["directory_limit"].default
    max_connections_per_user: int = _BY_NAME["max_connections_per_user"].default
    max_members_per_room: int = _BY_NAME["max_members_per_room"].default
    member_events_limit: int = _BY_NAME["member_events_limit"].default
    member_list_limit: int = _BY_NAME["member_list_limit"].default
    moderation_reason_max: int = _BY_NAME["moderation_reason_max"].default
    audit_page_max: int = _BY_NAME["audit_page_max"].default
    erase_limit: int = _BY_NAME["erase_limit"].default
    outbox_max_frames: int = _BY_NAME["outbox_max_frames"].default
    outbox_max_bytes: int = _BY_NAME["outbox_max_bytes"].default
    backlog_page_messages: int = _BY_NAME["backlog_page_messages"].default
    backlog_page_bytes: int = _BY_NAME["backlog_page_bytes"].default
    replay_max_messages: int = _BY_NAME["replay_max_messages"].default
    replay_max_bytes: int = _BY_NAME["replay_max_bytes"].default
    presence_grace: float = _BY_NAME["presence_grace"].default
    typing_throttle: float = _BY_NAME["typing_throttle"].default
    typing_ttl: float = _BY_NAME["typing_ttl"].default
    drain_seconds: float = _BY_NAME["drain_seconds"].default
    drain_reconnect_spread: float = _BY_NAME["drain_reconnect_spread"].default
    log_json: bool = _BY_NAME["log_json"].default
    log_level: str = _BY_NAME["log_level"].default
    block_threshold: float = _BY_NAME["block_threshold"].default
    api_keys: tuple[str, ...] = _BY_NAME["api_keys"].default
    api_rate: float = _BY_NAME["api_rate"].default
    api_burst: float = _BY_NAME["api_burst"].default
    api_max_body: int = _BY_NAME["api_max_body"].default
    hook_timeout: float = _BY_NAME["hook_timeout"].default
    webhooks: tuple[Endpoint, ...] = _BY_NAME["webhooks"].default
    webhook_max_attempts: int = _BY_NAME["webhook_max_attempts"].default
    webhook_backoff_base: float = _BY_NAME["webhook_backoff_base"].default
    webhook_backoff_cap: float = _BY_NAME["webhook_backoff_cap"].default
    webhook_timeout: float = _BY_NAME["webhook_timeout"].default
    webhook_concurrency: int = _BY_NAME["webhook_concurrency"].default
    webhook_poll: float = _BY_NAME["webhook_poll"].default
    webhook_lease: float = _BY_NAME["webhook_lease"].default
    webhook_breaker_failures: int = _BY_NAME["webhook_breaker_failures"].default
    webhook_breaker_cooldown: float = _BY_NAME["webhook_breaker_cooldown"].default
    push_window: float = _BY_NAME["push_window"].default
    push_preview: str = _BY_NAME["push_preview"].default
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def _check_page_urls(self) -> None:
        """The chat page's sign-in addresses: the page's CSP lets it fetch only its own origin,
        so ``token_url`` is a path; ``login_url`` is a page it links to, here or elsewhere."""
        token_url = self.token_url
        if token_url and (not token_url.startswith("/") or token_url.startswith("//")):
            invalid_setting(
                "token_url",
                f"must be a path on the chat page's origin such as /auth/chat-token, got "
                f"{token_url!r}",
            )
        login_url = self.login_url
        if login_url and not (
            re.match(r"https?://[^/\s]+", login_url)
            or (login_url.startswith("/") and not login_url.startswith("//"))
        ):
            invalid_setting(
                "login_url", f"must be an http(s) URL or a path such as /login, got {login_url!r}"
            )

    def __post_init__(self) -> None:
        self._check_api()
        self._check_webhooks()
        if self.secret and not self.dev and weak_secret(self.secret):
            invalid_setting(
                "secret",
                f"is {len(self.secret.encode('utf-8'))} bytes: outside development mode it must "
                f"be {MIN_SECRET_BYTES} bytes or more (make one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')",
            )
        if self.public_url:
            try:
                origin_of(self.public_url)
            except ValueError as exc:
                invalid_setting("public_url", str(exc))
        self._check_page_urls()
        if self.store_sync.upper() not in ("FULL", "NORMAL"):
            invalid_setting("store_sync", f"must be FULL or NORMAL, got {self.store_sync!r}")
        for name in (
            "max_frame_size",
            "outbox_max_frames",
            "outbox_max_bytes",
            "workers",
            "max_rooms_per_user",
            "erase_limit",
            "inbox_limit",
            "directory_limit",
            "max_connections_per_user",
            "max_members_per_room",
            "history_max_limit",
            "history_max_bytes",
            "history_bytes_per_token",
            "retention_count",
            "max_header_bytes",
            "max_handshakes",
            "max_setups",
            "max_fragments",
            "frame_burst",
            "frames_per_read",
            "receipts_per_commit",
            "backlog_page_messages",
            "backlog_page_bytes",
            "replay_max_messages",
            "replay_max_bytes",
            "max_reactions",
            "unread_count_max",
            "max_mentions",
            "unread_max_conversations",
            "unread_conversations_per_token",
            "audit_page_max",
        ):
            if getattr(self, name) < 1:
                invalid_setting(name, f"must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.moderation_reason_max <= 1000:
            invalid_setting(
                "moderation_reason_max", f"must be from 0 to 1000, got {self.moderation_reason_max}"
            )
        for name in ("token_refresh_notice", "token_expiry_grace"):
            if getattr(self, name) < 0:
                invalid_setting(name, f"must be 0 or more, got {getattr(self, name)}")
        if self.revocation_keep <= 0:
            invalid_setting(
                "revocation_keep", f"must be greater than 0, got {self.revocation_keep}"
            )
        if not 0 <= self.drain_reconnect_spread <= MAX_RESTART_DELAY_S:
            invalid_setting(
                "drain_reconnect_spread",
                f"must be from 0 to {MAX_RESTART_DELAY_S:g} (the longest hint a client honours), "
                f"got {self.drain_reconnect_spread}",
            )
        if self.edit_window < 0:
            invalid_setting("edit_window", f"must be 0 (always) or more, got {self.edit_window}")
        if self.closing_read_limit < 0:
            invalid_setting(
                "closing_read_limit", f"must be 0 or more, got {self.closing_read_limit}"
            )
        if self.redis_min_replicas < 0:
            invalid_setting(
                "redis_min_replicas", f"must be 0 or more, got {self.redis_min_replicas}"
            )
        if self.redis_wait_timeout < 0.001:
            invalid_setting(
                "redis_wait_timeout", f"must be 0.001 or more, got {self.redis_wait_timeout}"
            )
        if self.rate_abuse_rejections < 0:
            invalid_setting(
                "rate_abuse_rejections", f"must be 0 or more, got {self.rate_abuse_rejections}"
            )
        for name in (
            "connect_timeout",
            "heartbeat",
            "idle_timeout",
            "rate",
            "burst",
            "rate_abuse_window",
            "handshake_timeout",
            "frame_rate",
            "typing_throttle",
        ):
            if getattr(self, name) <= 0:
                invalid_setting(name, f"must be greater than 0, got {getattr(self, name)}")
        if self.typing_ttl <= self.typing_throttle:
            invalid_setting(
                "typing_ttl",
                f"must be greater than typing_throttle ({self.typing_throttle}), got "
                f"{self.typing_ttl}: an indicator would lapse between two relayed renewals",
            )

    def _check_webhooks(self) -> None:
        """The webhook settings; ``webhooks`` may be given as JSON text or a list of dicts."""
        try:
            endpoints = parse_endpoints(self.webhooks)
        except ValueError as exc:
            invalid_setting("webhooks", str(exc))
        object.__setattr__(self, "webhooks", endpoints)
        for name in ("webhook_max_attempts", "webhook_concurrency", "webhook_breaker_failures"):
            if getattr(self, name) < 1:
                invalid_setting(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("webhook_backoff_base", "webhook_timeout", "webhook_poll", "hook_timeout"):
            if getattr(self, name) <= 0:
                invalid_setting(name, f"must be greater than 0, got {getattr(self, name)}")
        if self.webhook_backoff_cap < self.webhook_backoff_base:
            invalid_setting(
                "webhook_backoff_cap",
                f"must be at least webhook_backoff_base ({self.webhook_backoff_base}), got "
                f"{self.webhook_backoff_cap}",
            )
        if self.webhook_lease <= self.webhook_timeout:
            invalid_setting(
                "webhook_lease",
                f"must be greater than webhook_timeout ({self.webhook_timeout}), got "
                f"{self.webhook_lease}: a delivery still under way would be taken over",
            )
        if self.push_window <= 0:
            invalid_setting("push_window", f"must be greater than 0, got {self.push_window}")
        if self.push_preview not in PREVIEWS:
            invalid_setting(
                "push_preview", f"must be one of {', '.join(PREVIEWS)}, got {self.push_preview!r}"
            )
        if self.webhook_breaker_cooldown < 0:
            invalid_setting(
                "webhook_breaker_cooldown",
                f"must be 0 or more, got {self.webhook_breaker_cooldown}",
            )

    def push_policy(self) -> PushPolicy:
        """The offline push settings as ``actorim.domain.push`` takes them."""
        return PushPolicy(
            window_s=self.push_window,
            grace_s=self.presence_grace,
            preview=cast(Preview, self.push_preview),
        )

    def _check_api(self) -> None:
        """The server API's settings (``actorim.web.api``)."""
        try:
            ApiKeys.parse(self.api_keys)
        except ValueError as exc:
            invalid_setting("api_keys", str(exc))
        if self.api_rate <= 0:
            invalid_setting("api_rate", f"must be greater than 0, got {self.api_rate}")
        if self.api_burst < 1:
            invalid_setting("api_burst", f"must be at least 1, got {self.api_burst}")
        if self.api_max_body < 1:
            invalid_setting("api_max_body", f"must be at least 1, got {self.api_max_body}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Settings from ``ACTORIM_*`` (and ``PORT``, ``REDIS_URL``...) variables, then keywords."""
        return config_from(None, environ if environ is not None else os.environ, **overrides)

    def with_(self, **changes: Any) -> Config:
        """A copy with some settings changed."""
        return replace(self, **changes)

    @property
    def history_page_bytes(self) -> int:
        """The byte cap of a history page: ``history_max_bytes``, but never more than a
        quarter of ``outbox_max_bytes``, so a page fits the outbox beside live traffic."""
        return min(self.history_max_bytes, self.outbox_max_bytes // 4)

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)


def invalid_setting(name: str, problem: str) -> None:
    """Refuse setting ``name``'s value: a ValueError that names its flag and environment
    variable, so the operator knows what to fix (raised here, and by ``actorim.node`` for the
    choices only the composition root knows, such as the store)."""
    setting = _BY_NAME[name]
    msg = f"setting {name} ({setting.flag} / {setting.env_var}) {problem}"
    raise ValueError(msg)


def config_environment(config: Config) -> dict[str, str]:
    """The environment variables that give another process exactly these settings."""
    env = {}
    for s in SETTINGS:
        value = getattr(config, s.name)
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif s.name == "webhooks":
            text = endpoints_json(value)
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        env[s.env_var] = text
    return env


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting, with its environment variable and default in the help."""
    for s in SETTINGS:
        default = ",".join(s.default) if isinstance(s.default, tuple) else s.default
        help_text = f"{s.help} [env {s.env_var}; default {default!r}]"
        if s.parse is _bool:
            parser.add_argument(
                s.flag,
                dest=s.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                s.flag,
                dest=s.name,
                type=s.parse,
                default=None,
                metavar=s.name.upper(),
                help=help_text,
            )


def config_from(
    args: argparse.Namespace | None, environ: Mapping[str, str], **overrides: Any
) -> Config:
    """Flags over environment over defaults; a bad value names its setting."""
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    for s in SETTINGS:
        flagged = getattr(args, s.name, None) if args is not None else None
        if flagged is not None:
            values[s.name] = flagged
            continue
        raw = environ.get(s.env_var)
        if raw is None and s.name == "port":
            raw = environ.get("ACTORIM_PORT")
        if raw is None:
            continue
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            msg = f"setting {s.name} from {s.env_var}={raw!r}: {exc}"
            raise ValueError(msg) from None
    values.update({k: v for k, v in overrides.items() if k in known})
    return Config(**values)
