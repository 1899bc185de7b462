"""The actors of a node: connections, rooms, the router, presence, the store and the heartbeat."""
