"""The pseudonymization key when the shared store keeps it (no `audit.key` set).

Every process must hash a recipient the same way, or opt-outs and counters
split. The key is generated once and kept in the store; each machine's data
folder remembers a fingerprint of it (never the key). A store that comes back
without the key, or with another one, has lost its data: a process refuses to
start on it rather than quietly hash recipients anew. A running process that
still holds the key puts it back (see `keep`), so processes started later agree.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from gateway.errors import ConfigError
from gateway.store.base import Store

NAME = "pseudonymization-key"
FINGERPRINT_FILE = "pseudonymization-key.fingerprint"

log = logging.getLogger("gateway")


def fingerprint(key: bytes) -> str:
    """Tells keys apart without revealing them."""
    return hmac.new(key, b"gateway pseudonymization key fingerprint", hashlib.sha256).hexdigest()


async def load(store: Store, folder: Path) -> bytes:
    """The key kept in `store`, created on the very first start. `folder` (the
    data folder) remembers its fingerprint when it exists."""
    path = folder / FINGERPRINT_FILE
    remembered = path.read_text(encoding="ascii").strip() if path.is_file() else None

    def make() -> bytes:
        if remembered is not None:
            raise ConfigError(
                f"the shared store holds no pseudonymization key, but {path} remembers one: "
                "Redis lost its data (restarted without persistence?), so opt-outs, counters "
                "and idempotency records are gone too; restore Redis from a backup, or keep a "
                "gateway that still runs (it puts its key back), or delete that file to start "
                "over with a new key (older records can then no longer be found by recipient)"
            )
        return secrets.token_bytes(32)

    key = await store.secret(NAME, make)
    check_remembered(key, folder)
    if remembered is None and folder.is_dir():
        _write(path, fingerprint(key))
    return key


def check_remembered(key: bytes, folder: Path) -> None:
    """ConfigError when `folder` remembers another key than `key`: the store
    is not the one this folder's records were hashed for."""
    path = folder / FINGERPRINT_FILE
    remembered = path.read_text(encoding="ascii").strip() if path.is_file() else None
    if remembered is not None and fingerprint(key) != remembered:
        raise ConfigError(
            f"the shared store holds another pseudonymization key than the one {path} "
            "remembers: is this the same Redis, database and redis_prefix as before? "
            "(delete that file only to accept the store's key)"
        )


async def keep(store: Store, key: bytes) -> None:
    """Check that the store still holds `key`, putting it back when the store
    lost it; raise ConfigError when it holds another one."""

    def put_back() -> bytes:
        log.warning(
            "the shared store had lost the pseudonymization key (Redis restarted without its "
            "data?): this process put its key back; opt-outs, counters and idempotency "
            "records kept before may be gone: give Redis persistence (docs/shared-mode.md)"
        )
        return key

    held = await store.secret(NAME, put_back)
    if held != key:
        raise ConfigError(
            "the shared store holds another pseudonymization key than this process (Redis"
            " lost its data and another process made a new one): stop the processes that"
            " use the new key and delete it from Redis, and this process puts its own back"
            " (docs/shared-mode.md)"
        )


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text + "\n", encoding="ascii")
    partial.replace(path)
