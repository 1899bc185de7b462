"""The single-node adapters: what a node that shares nothing with others plugs into the ports."""
