"""What changes on a Redis Cluster, in one place: how to publish, the scripts, and ``WAIT``.

Classic ``PUBLISH`` in a Redis Cluster is broadcast over the cluster bus to every shard, so its
cost grows with the cluster; ``SPUBLISH`` keeps a channel on the shard of its slot. Every channel
of actorim shares the hash tag of the keys its publisher's script writes (a room's messages and
its channel, a presence shard's counts and its channel), so a script publishes on its own shard.
On a single Redis or under Sentinel the classic commands stay: one server has nothing to shard.

A Redis Cluster does not replicate its script cache: a replica that takes over answers NOSCRIPT
until the scripts are loaded again. ``load_scripts`` loads them on every master; the store and
the link call it when a call failed with NOSCRIPT (no command of it ran, so the caller's retry,
by cid for a send, is safe).

redis-py's own pipeline sends ``SCRIPT EXISTS`` before every pipeline that holds a script (a
round trip more for every commit of sends, every inbox read, every unread count: 5 % of the
receiving node's interpreter time in a reconnect storm). A client made by
``actorim.redis.topology.make_client`` for a single Redis or a Sentinel master has a
`ScriptLoader` instead: every connection it opens
(the first time, and again after Redis restarted and lost its script cache) makes sure the
scripts registered for the client are loaded before its first command, so its pipelines send
plain ``EVALSHA``. A client made otherwise keeps redis-py's way.

``WAIT n timeout`` counts the replicas that have every write made earlier on the same
connection, so it is queued at the end of the pipeline that wrote, once per master the pipeline
reaches (``queue_wait``); ``replicated`` checks the answers.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from typing import Any

from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisError

__all__ = [
    "ScriptLoader",
    "ShardedScript",
    "load_on_connect",
    "load_scripts",
    "publish",
    "queue_wait",
    "register_script",
    "replicated",
    "script_source",
]


class ScriptLoader:
    """The scripts of one client's connection pool, loaded on each connection it opens."""

    def __init__(self) -> None:
        self.scripts: dict[str, str] = {}
        """Source by SHA1: every script registered for the client."""

    def add(self, client: Any, sha: str, source: str) -> None:
        """Register the script ``source`` and load it now (the server's cache is shared by
        every connection already open)."""
        if sha in self.scripts:
            return
        self.scripts[sha] = source
        with contextlib.suppress(RedisError, OSError):  # Redis away: loaded as it connects
            client.script_load(source)

    def on_connect(self, connection: Any) -> None:
        """A connection was (re)made: load what the server lacks, before any command of it."""
        shas = list(self.scripts)
        if not shas:
            return
        connection.send_command("SCRIPT", "EXISTS", *shas)
        there = connection.read_response()
        for sha, loaded in zip(shas, there, strict=True):
            if not loaded:
                connection.send_command("SCRIPT", "LOAD", self.scripts[sha])
                connection.read_response()


_LOADERS: weakref.WeakKeyDictionary[Any, ScriptLoader] = weakref.WeakKeyDictionary()


def load_on_connect(client: Any) -> None:
    """Give ``client`` (a single Redis's or a Sentinel master's) a `ScriptLoader`: each
    connection its pool makes loads the client's scripts when it connects."""
    pool = client.connection_pool
    loader = _LOADERS[pool] = ScriptLoader()
    make_connection = pool.make_connection

    def make_loading_connection() -> Any:
        connection = make_connection()
        connection.register_connect_callback(loader.on_connect)
        return connection

    pool.make_connection = make_loading_connection


class ShardedScript(Script):
    """redis-py's ``Script`` that also runs in a cluster's pipeline, which refuses EVALSHA
    by name: there it is sent as a plain command, routed by its keys, and the script must have
    been loaded on the masters beforehand (``load_scripts``). In the pipeline of a client with
    a `ScriptLoader` it is a plain EVALSHA too: its connections loaded it."""

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, Pipeline) and client.connection_pool in _LOADERS:
            keys = list(keys or [])
            return client.evalsha(self.sha, len(keys), *keys, *(args or []))
        if isinstance(client, ClusterPipeline):
            keys = list(keys or [])
            command = ("EVALSHA", self.sha, len(keys), *keys, *(args or []))
            if not keys:
                return client.execute_command(*command)
            # Routed here, by the slot of the first key (every key of a script shares it):
            # left to the pipeline, each EVALSHA would cost a COMMAND GETKEYS round trip.
            return client.execute_command(*command, target_nodes=client.get_node_from_key(keys[0]))
        return super().__call__(keys, args, client)


def register_script(client: Any, source: str) -> ShardedScript:
    """The script ``source`` for ``client``'s topology (``script_source``), loaded on each of
    its connections if it has a `ScriptLoader`."""
    text = script_source(source, is_sharded(client))
    script = ShardedScript(client, text)
    loader = None if is_sharded(client) else _LOADERS.get(client.connection_pool)
    if loader is not None:
        loader.add(client, script.sha, text)
    return script


def is_sharded(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster: publish with SPUBLISH, listen per shard."""
    return isinstance(client, RedisCluster)


def script_source(source: str, sharded: bool) -> str:
    """A Lua script's source for the topology: on a cluster its ``PUBLISH`` calls become
    ``SPUBLISH`` (every script publishes on a channel of its own keys' slot).

    >>> script_source("redis.call('PUBLISH', ARGV[1], ARGV[2])", True)
    "redis.call('SPUBLISH', ARGV[1], ARGV[2])"
    """
    return source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'") if sharded else source


def publish(target: Any, sharded: bool, channel: str, payload: bytes) -> Any:
    """Publish ``payload`` on ``channel`` through ``target`` (a client or a pipeline)."""
    if sharded:
        return target.spublish(channel, payload)
    return target.publish(channel, payload)


def load_scripts(client: Any, scripts: Iterable[Script]) -> None:
    """Load ``scripts`` on every master of the cluster (on the server, for a single Redis)
    unless every master has them: one SCRIPT EXISTS per master when they are there."""
    scripts = list(scripts)
    there = client.script_exists(*(script.sha for script in scripts))
    for script, loaded in zip(scripts, there, strict=True):
        if not loaded:
            client.script_load(script.script)


def queue_wait(
    pipe: Any, client: Any, replicas: int, timeout_ms: int, written: Iterable[str]
) -> int:
    """Queue ``WAIT replicas timeout_ms`` last in ``pipe``, once per master that holds one of
    the ``written`` keys; how many were queued (the last answers of ``pipe.execute()``).

    Only those masters: a shard that lost its replica (its old master is the one that died)
    does not hold up the writes that go to the others."""
    if replicas < 1:
        return 0
    if isinstance(client, RedisCluster):
        masters = {client.get_node_from_key(key).name: key for key in written}
        for name in masters:
            node = client.get_node(node_name=name)
            pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
        return len(masters)
    pipe.execute_command("WAIT", replicas, timeout_ms)
    return 1


def replicated(answers: list[Any], replicas: int) -> bool:
    """Whether every ``WAIT`` answered at least ``replicas``."""
    return all(int(answer) >= replicas for answer in answers)
