"""Cluster mode: several nodes share routing, presence, sessions and history through Redis.

Redis is the engine: the Redis store sequences, persists and publishes every message in one
script; each node subscribes only to the channels its own connections need; presence and room
membership are counted cluster-wide in Redis so that each change is announced once; nodes refresh
their liveness with a TTL and the survivors reap a node that died without saying goodbye. The
link to Redis is governed by a circuit breaker: while it is open a node keeps its WebSockets,
answers ``send`` with ``overloaded`` and presence from what it knows, and when it closes again the
node resubscribes, re-registers its connections and repairs its rooms' gaps.
"""
