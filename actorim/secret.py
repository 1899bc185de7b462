"""The secret that signs a node's tokens: the configured one, or in development mode a kept one.

Outside development mode the secret is configured (``ACTORIM_SECRET``, at least
``MIN_SECRET_BYTES``; ``Config`` refuses a shorter one). In development mode without one, the
node generates a secret once and keeps it in the data directory (``DEV_SECRET_FILE``, readable
by its owner only), so a restart, or another worker of ``--workers``, signs and accepts the same
tokens: a browser tab stays signed in across ``make run`` restarts.

>>> import tempfile
>>> from actorim.config import Config
>>> data_dir = tempfile.mkdtemp()
>>> first = token_secret(Config(dev=True, data_dir=data_dir))
>>> first == token_secret(Config(dev=True, data_dir=data_dir))
True
>>> oct(os.stat(os.path.join(data_dir, DEV_SECRET_FILE)).st_mode & 0o777)
'0o600'
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from actorim.config import Config
from actorim.domain.auth import generate_secret

__all__ = ["DEV_SECRET_FILE", "dev_secret_path", "token_secret"]

logger = logging.getLogger("actorim")

DEV_SECRET_FILE = "dev-secret"
"""Name of the generated development secret in the data directory."""

# Owner read and write only: the file signs tokens for any user.
_FILE_MODE = 0o600


def dev_secret_path(config: Config) -> Path:
    """Where a development node keeps its generated secret."""
    return Path(config.data_dir) / DEV_SECRET_FILE


def token_secret(config: Config) -> str:
    """The configured secret; in development mode without one, the kept (or a new) one.

    Raises ``ValueError`` saying what to set when there is no secret outside development mode.
    """
    if config.secret:
        return config.secret
    if not config.dev:
        msg = "ACTORIM_SECRET (--secret) is required outside development mode (--dev)"
        raise ValueError(msg)
    return _load_or_create(dev_secret_path(config))


def _load_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = _read(path)
    if existing is not None:
        return existing
    # Written under a temporary name, then linked into place: the link fails if another
    # process (a second worker) got there first, and nobody ever reads a half-written file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(generate_secret() + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    secret = _read(path)
    assert secret is not None, path
    return secret


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not text:
        msg = f"the development secret file {path} is empty: delete it to generate a new one"
        raise ValueError(msg)
    if path.stat().st_mode & 0o077:
        logger.warning("%s was readable by others: made it readable by its owner only", path)
        path.chmod(_FILE_MODE)
    return text
