"""Names of the cluster's keys and channels, beside the message store's own.

Everything of one room shares the hash tag of its conversation (``{r:<room>}``): its
messages, sequence, members and channel. Everything of one user shares ``{u:<user>}``,
everything of one node ``{node:<id>}``. Presence is split in ``PRESENCE_SHARDS`` shards by a
hash of the user (``{p:<k>}``: counts, state and channel of the users of shard k), so that no
slot carries the whole cluster's presence and a presence script still touches one slot and
publishes on it. Each Lua script touches one slot: ready for Redis Cluster and sharded pub/sub.
The list of nodes (``ns:nodes``, a set of node ids) is the small registry that lets a node
reach every other node's keys without a SCAN.

Layout of presence before it was sharded: ``ns:{presence}:counts`` and ``:state``. A node of
this version does not read them: presence is recounted from the live connections when every
node runs this version (docs/deploy.md: upgrade all nodes together, then delete the old keys).
"""

from __future__ import annotations

import zlib

from actorim.domain.messages import room_conv
from actorim.redis.moderation import ModerationKeys
from actorim.redis.store import StoreKeys

__all__ = ["PRESENCE_SHARDS", "ClusterKeys"]

# Presence shards: 16 slots' worth, spread over the masters of any cluster up to 16 masters;
# every node listens to all 16 channels (it needs every presence change it may be watching).
PRESENCE_SHARDS = 16


class ClusterKeys:
    """Key and channel names of one namespace."""

    def __init__(self, namespace: str = "actorim") -> None:
        self.namespace = namespace
        self.store = StoreKeys(namespace)
        self.moderation = ModerationKeys(namespace)
        ns = namespace
        self.presence_channels = [self._presence(k) for k in range(PRESENCE_SHARDS)]
        self.nodes = f"{ns}:nodes"
        self.revocations = f"{ns}:{{revocations}}:kept"
        self.revocations_channel = f"{ns}:{{revocations}}"

    def _presence(self, shard: int) -> str:
        return f"{self.namespace}:{{p:{shard}}}"

    def presence_shard(self, user: str) -> str:
        """The tag prefix of ``user``'s presence shard: its channel, and its keys' prefix.

        >>> ClusterKeys("im").presence_shard("alice")
        'im:{p:10}'
        """
        return self._presence(zlib.crc32(user.encode()) % PRESENCE_SHARDS)

    def presence_counts(self, user: str) -> str:
        """The hash of connection counts of ``user``'s shard."""
        return f"{self.presence_shard(user)}:counts"

    def presence_state(self, user: str) -> str:
        """The hash of announced states of ``user``'s shard."""
        return f"{self.presence_shard(user)}:state"

    def room_channel(self, room: str) -> str:
        return self.store.conversation_channel(room_conv(room))

    def user_channel(self, user: str) -> str:
        return self.store.user_channel(user)

    def room_members(self, room: str) -> str:
        return f"{self.namespace}:{{{room_conv(room)}}}:members"

    def node_alive(self, node: str) -> str:
        return f"{self.namespace}:{{node:{node}}}:alive"

    def node_users(self, node: str) -> str:
        return f"{self.namespace}:{{node:{node}}}:users"

    def node_members(self, node: str) -> str:
        return f"{self.namespace}:{{node:{node}}}:members"

    def node_sessions(self, node: str) -> str:
        return f"{self.namespace}:{{node:{node}}}:sessions"
