"""The Python samples of docs/clients.md run as written, against a real node.

Each sample runs in a child process (the first line of the docs' example monkey-patches the
standard library, which a test process must not do again) after a preamble that gives it what
the text around it assumes: ``url``, ``token``, a connected ``client`` in the room ``orders``,
``order``, ``handle_message``, and a user ``bob`` who is online and may have written in ``team``.
The server's address replaces the docs' ``localhost:8080``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import RunningNode

DOCS = Path(__file__).resolve().parent.parent / "docs" / "clients.md"
SAMPLES = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
TIMEOUT_S = 60.0  # a child process starts in about half a second; each sample takes less
# Messages bob writes in "team" first: none (a new room), or more than the sample's history
# page of 20.
SEEDED = (0, 25)

PREAMBLE = """\
from gevent import monkey; monkey.patch_all()
import gevent.event
from actorim.client import Client

url, token = {url!r}, {token!r}
order = {{"item": "tea", "qty": 2}}

def handle_message(message):
    print("handled", message["body"])

bob = Client(url, {bob_token!r})
bob.connect()
bob.join("team")
for n in range({seeded}):
    bob.send(room="team", body=f"note {{n}}")
client = Client(url, token)
client.connect()
client.join("orders")
# A message waits in the client's buffer for the events() sample; the client is closed as soon
# as the sample waits, so that its loop ends once it has read what is there.
arrived = gevent.event.Event()
client.on("msg", lambda message: arrived.set())
bob.join("orders")
bob.send(room="orders", body="first order")
assert arrived.wait(10), "bob's message did not arrive"
if {closes!r}:
    gevent.spawn(client.close)
"""

POSTAMBLE = """
client.close()
bob.close()
print("sample done")
"""


def test_every_python_sample_is_found() -> None:
    assert len(SAMPLES) == 13, "a sample was added or removed: check what it needs below"


@pytest.mark.process
@pytest.mark.parametrize("seeded", SEEDED)
@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_the_python_sample_runs_as_written(
    index: int, seeded: int, start_node: object, tmp_path: Path
) -> None:
    node: RunningNode = start_node()  # type: ignore[operator]
    sample = SAMPLES[index]
    sample = sample.replace("ws://localhost:8080/ws", node.url)
    sample = sample.replace("http://localhost:8080", node.http)
    preamble = PREAMBLE.format(
        url=node.url,
        token=node.token("alice"),
        bob_token=node.token("bob"),
        seeded=seeded,
        closes="client.events(" in sample,
    )
    script = tmp_path / f"sample{index}.py"
    script.write_text(preamble + "\n" + sample + POSTAMBLE)
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"{sample}\n--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    out = done.stdout
    assert out.endswith("sample done\n"), out
    if "client.events(" in sample:
        assert "msg {" in out and "first order" in out, out
    if "client.presence(" in sample:
        assert "{'bob': 'online', 'carol': 'offline'}" in out, out
    if "client.thread(" in sample:
        assert "True\n2 ['tea', 'with milk']\n" in out, out
    if 'body="hello"' in sample:
        assert re.search(r"^\S+ 1$", out, re.M), out  # print(sent.mid, sent.seq)
