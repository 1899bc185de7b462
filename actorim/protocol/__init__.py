"""The wire protocol: pure decoding, validation and encoding, with no sockets, actors or clock."""
