"""Names of the cluster's keys and channels, beside the message store's own.

Everything of one room shares the hash tag of its conversation (``{r:<room>}``), everything of
one user the tag ``{u:<user>}``, everything of one node ``{node:<id>}``, and presence its own
``{presence}``: each Lua script touches one slot, ready for Redis Cluster and sharded pub/sub.
"""

from __future__ import annotations

from actorim.domain.messages import room_conv
from actorim.redis.moderation import ModerationKeys
from actorim.redis.store import StoreKeys

__all__ = ["ClusterKeys"]


class ClusterKeys:
    """Key and channel names of one namespace."""

    def __init__(self, namespace: str = "actorim") -> None:
        self.namespace = namespace
        self.store = StoreKeys(namespace)
        self.moderation = ModerationKeys(namespace)
        ns = namespace
        self.presence_counts = f"{ns}:{{presence}}:counts"
        self.presence_state = f"{ns}:{{presence}}:state"
        self.presence_channel = f"{ns}:{{presence}}"
        self.nodes = f"{ns}:nodes"
        self.revocations = f"{ns}:{{revocations}}:kept"
        self.revocations_channel = f"{ns}:{{revocations}}"

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
