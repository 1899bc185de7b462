"""Programs built on the server and the client: the terminal chat, the load test and the
publisher (sending into a cluster from outside a node)."""
