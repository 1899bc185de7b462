"""State and decisions, with no I/O: conversation keys, presence, rate limits, outboxes, backlog
paging, credentials. Pure objects fed events by the runtime's actors; nothing here imports
gevent, Pykka, Redis or sockets (``make lint`` checks it)."""
