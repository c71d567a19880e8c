"""Large detector states kept as files beside the store, referenced from it.

A detector's state is saved with every commit, in the same transaction as the checkpoints
it belongs to. Written into DuckDB as a BLOB, a state of tens of megabytes (the rule
engine's over a busy day) costs more than the events of the commit and presses on the
store's memory limit. So a large state is written to a file named by its SHA-256 in
``<store>.states/`` *before* the transaction, and the transaction stores only a reference
(file name, digest, size). A crash before the commit leaves the previous reference, whose
file is still there; files no reference names are removed after each commit. Loading
verifies the digest and fails closed: a missing or altered file is a ``StoreError``, never
a silently empty state.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Final

import orjson

from correlator.errors import StoreError

#: States at least this large go to a file; smaller ones stay inline in the store.
INLINE_BYTES: Final = 256 * 1024
#: First bytes of a reference (a state itself never starts with them).
REF_MAGIC: Final = b"FURUI-STATE-FILE-1\n"
_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]+-[0-9a-f]{64}\.state$")


def folder_of(store: Path) -> Path:
    """The folder of a store's state files: ``furui.duckdb.states`` beside ``furui.duckdb``."""
    return store.with_name(store.name + ".states")


def save(folder: Path, ruleset: str, state: bytes) -> bytes:
    """What to store for a state: the state itself if small, else a reference to its file.

    Raises:
        StoreError: the file cannot be written.
    """
    if len(state) < INLINE_BYTES:
        return state
    digest = hashlib.sha256(state).hexdigest()
    name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', ruleset)}-{digest}.state"
    path = folder / name
    if not path.exists():
        temporary = path.with_suffix(".tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as out:
                out.write(state)
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(path)
        except OSError as error:
            raise StoreError(f"{path}: cannot write detector state: {error}") from error
    reference = {"file": name, "sha256": digest, "size": len(state)}
    return REF_MAGIC + orjson.dumps(reference, option=orjson.OPT_SORT_KEYS)


def load(folder: Path, stored: bytes) -> bytes:
    """The state a stored value stands for (itself, or its file's verified content).

    Raises:
        StoreError: the referenced file is missing, unreadable or not what was saved.
    """
    if not stored.startswith(REF_MAGIC):
        return stored
    reference = orjson.loads(stored[len(REF_MAGIC) :])
    path = folder / str(reference["file"])
    try:
        state = path.read_bytes()
    except OSError as error:
        raise StoreError(f"{path}: detector state missing or unreadable: {error}") from error
    if hashlib.sha256(state).hexdigest() != reference["sha256"]:
        raise StoreError(f"{path}: detector state altered (sha256 differs from the store's)")
    return state


def referenced(stored: bytes) -> str | None:
    """The file name a stored value references, if it is a reference."""
    if not stored.startswith(REF_MAGIC):
        return None
    return str(orjson.loads(stored[len(REF_MAGIC) :])["file"])


def prune(folder: Path, keep: set[str]) -> None:
    """Remove state files (and unfinished writes) that no reference in ``keep`` names."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        stale = path.suffix == ".tmp" or (_NAME.match(path.name) and path.name not in keep)
        if stale:
            path.unlink(missing_ok=True)
