"""What the chat page's browser tests (``tests/test_page_*.py``) share besides those of
``tests/test_browser.py``: a person writing from Python, for a page to show."""

from __future__ import annotations

import json

from tests.support import Client, http_get
from tests.test_browser import ServerProcess


def dev_client(server: ServerProcess, user: str, *rooms: str) -> Client:
    """``user`` connected from Python to a development server, a member of ``rooms``."""
    _, _, body = http_get(f"{server.base}/dev/token?user={user}")
    client = Client(f"ws://127.0.0.1:{server.port}/ws")
    client.connect(json.loads(body)["token"])
    for room in rooms:
        client.ok("join", room=room)
    return client
