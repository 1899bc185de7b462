"""The actors of a node: connections, rooms, the router, presence, the store, the heartbeat,
and the context and links that tie them together. It is not to import the web layer or a
concrete store or broker adapter; ``make lint`` checks it, and the contract in setup.cfg lists
the imports that still do, each a debt to remove."""
