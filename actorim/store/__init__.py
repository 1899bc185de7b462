"""Message storage: the Store interface, its value types, and the SQLite and in-memory backends.

The Redis backend is ``actorim.redis.store.RedisStore``, with the rest of what talks to Redis."""

from actorim.store.base import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    DEFAULT_PRUNE_BUDGET,
    NewMessage,
    Receipt,
    ReceiptStatus,
    Store,
    StoredMessage,
    StoreError,
    StoreUnavailable,
    dm_conv,
    mid_ms,
    new_mid,
    room_conv,
)
from actorim.store.memory import MemoryStore
from actorim.store.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SqliteStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_MAX_AGE_MS",
    "DEFAULT_MAX_COUNT",
    "DEFAULT_PRUNE_BUDGET",
    "MemoryStore",
    "NewMessage",
    "Receipt",
    "ReceiptStatus",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredMessage",
    "dm_conv",
    "mid_ms",
    "new_mid",
    "room_conv",
]
