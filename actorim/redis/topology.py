"""Which Redis a node talks to, from one URL: a single server, a Redis Cluster, or Sentinel.

``redis_url`` names the topology by its scheme::

    redis://[user:password@]host:port/db             one server (rediss:// for TLS)
    redis+cluster://[user:password@]host:port,host:port
                                                     Redis Cluster: any of its nodes to start
                                                     from (rediss+cluster:// for TLS)
    redis+sentinel://[user:password@]host:port,host:port/master-name[/db]
                                                     Sentinel: the sentinels, and the name of
                                                     the master they watch (rediss+sentinel://)

The password is the data nodes' (``requirepass``); Sentinel's own, if it has one, is the query
option ``sentinel_password``. TLS options go in the query too (``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``). ``parse_url`` is pure and raises a
``ValueError`` that names the setting and never echoes the password; ``make_client`` builds
the client. Every client fails fast: a command that fails is never sent again by the client
(a retried append could store twice); the caller's breaker and the senders' cids handle it.
A cluster client still follows MOVED and ASK redirections, which are answers of a node that
did not run the command.

>>> t = parse_url("rediss+cluster://:pw@10.0.0.1:7000,10.0.0.2")
>>> t.kind, t.tls, t.hosts, t.password
('cluster', True, (('10.0.0.1', 7000), ('10.0.0.2', 6379)), 'pw')
>>> s = parse_url("redis+sentinel://s1:26379,s2/mymaster/2")
>>> s.kind, s.hosts, s.master, s.db
('sentinel', (('s1', 26379), ('s2', 26379)), 'mymaster', 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import AskError, MovedError, RedisClusterException, TryAgainError
from redis.retry import Retry
from redis.sentinel import Sentinel

from actorim.redis.shards import load_on_connect

__all__ = [
    "REDIS_ERRORS",
    "REDIS_SOCKET_TIMEOUT_S",
    "Kind",
    "Topology",
    "make_client",
    "parse_url",
]

# How long one Redis call may take before it counts as a failure of the link: a Redis that does
# not answer within it is as bad as one that is down.
REDIS_SOCKET_TIMEOUT_S = 2.0

# Every failure of a call to Redis, whatever the topology: redis-py's cluster client raises some
# (no reachable node, a slot no node serves) as a RedisClusterException, which is no RedisError.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, RedisClusterException)

Kind = Literal["single", "cluster", "sentinel"]

_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_DEFAULT_PORT = {"single": 6379, "cluster": 6379, "sentinel": 26379}
# The query options a cluster or Sentinel URL may carry (a single server's URL is redis-py's
# own, with its own options).
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_OPTIONS = (*_TLS_OPTIONS, "sentinel_password", "sentinel_username")
_FORMS = (
    "redis://host:port/db, redis+cluster://host:port,host:port or "
    "redis+sentinel://host:port,host:port/master-name"
)


@dataclass(frozen=True, slots=True)
class Topology:
    """What a ``redis_url`` says; see the module docstring."""

    kind: Kind
    url: str
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    master: str = ""
    db: int = 0
    options: dict[str, str] = field(default_factory=dict)


def _invalid(url: str, problem: str) -> ValueError:
    return ValueError(
        f"setting redis_url (--redis-url / REDIS_URL) {problem}, got {_masked(url)!r}; "
        f"expected {_FORMS} (rediss for TLS)"
    )


def _masked(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"


def parse_url(url: str) -> Topology:
    """The topology ``url`` names; a ValueError saying what is wrong if it names none."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise _invalid(url, f"has an unknown scheme {scheme!r}" if sep else "is not a URL")
    kind, tls = _SCHEMES[scheme.lower()]
    if kind == "single":
        return Topology("single", url, tls=tls)
    rest, _, query = rest.partition("?")
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    netloc, _, path = rest.partition("/")
    hosts = tuple(_host(url, part, _DEFAULT_PORT[kind]) for part in netloc.split(","))
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise _invalid(url, f"has unknown options {', '.join(unknown)} (known: {_OPTIONS})")
    parts = [p for p in path.split("/") if p]
    master, db = "", 0
    if kind == "sentinel":
        if not parts:
            raise _invalid(url, "names no master (the path: /master-name)")
        master, parts = unquote(parts[0]), parts[1:]
    if parts and kind == "cluster":
        raise _invalid(url, "has a path: Redis Cluster has only database 0")
    if parts:
        if len(parts) > 1 or not parts[0].isdigit():
            raise _invalid(url, f"has a database {'/'.join(parts)!r} that is not a number")
        db = int(parts[0])
    return Topology(kind, url, tls, hosts, username, password, master, db, options)


def _host(url: str, part: str, default_port: int) -> tuple[str, int]:
    if part.startswith("["):  # [::1]:7000
        host, _, port = part[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = part.partition(":")
    if not host:
        raise _invalid(url, "has an empty host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise _invalid(url, f"has a bad port {port!r} for host {host!r}")
    return host, int(port) if port else default_port


# A cluster pipeline sends again, one by one, the commands that failed with one of these. redis-py
# lists connection errors and timeouts there too, but a command whose answer was lost may have
# run (an append stored twice, a WAIT answered on another connection that wrote nothing); only
# the answers of a node that did not run the command stay: MOVED, ASK, TRYAGAIN. The class
# reads the tuple from itself, so it is set on it, once, for every cluster client of the process.
ClusterPipeline.ERRORS_ALLOW_RETRY = (MovedError, AskError, TryAgainError)  # type: ignore[assignment]


def _fail_fast() -> dict[str, Any]:
    return {
        "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }


def _auth_tls(topology: Topology) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"username": topology.username, "password": topology.password}
    if topology.tls:
        kwargs["ssl"] = True
        kwargs.update({k: v for k, v in topology.options.items() if k in _TLS_OPTIONS})
    return kwargs


def make_client(url: str | Topology) -> Any:
    """A client for the topology ``url`` names that fails fast (see the module docstring):
    ``redis.Redis``, ``redis.cluster.RedisCluster`` or a Sentinel-managed ``redis.Redis``."""
    topology = url if isinstance(url, Topology) else parse_url(url)
    if topology.kind == "single":
        client = redis.Redis.from_url(topology.url, retry_on_timeout=False, **_fail_fast())
        load_on_connect(client)
        return client
    if topology.kind == "cluster":
        try:
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
                **_fail_fast(),
                **_auth_tls(topology),
            )
        except REDIS_ERRORS as exc:
            # The cluster client reads the slot map as it is made: it cannot wait for Redis.
            hosts = ",".join(f"{host}:{port}" for host, port in topology.hosts)
            msg = (
                f"no node of the Redis Cluster at {hosts} answered ({exc}): a node needs one"
                " to read the slot map when it starts; check redis_url (--redis-url /"
                " REDIS_URL) and that the cluster is up, then start the node again"
            )
            raise ValueError(msg) from exc
    sentinel_kwargs = {
        **_fail_fast(),
        "username": topology.options.get("sentinel_username"),
        "password": topology.options.get("sentinel_password"),
    }
    if topology.tls:
        sentinel_kwargs.update(_auth_tls(topology))
        sentinel_kwargs["username"] = topology.options.get("sentinel_username")
        sentinel_kwargs["password"] = topology.options.get("sentinel_password")
    sentinel = Sentinel(list(topology.hosts), sentinel_kwargs=sentinel_kwargs)
    master = sentinel.master_for(
        topology.master, db=topology.db, **_fail_fast(), **_auth_tls(topology)
    )
    load_on_connect(master)
    return master
