"""Claims on image contents, so that one content is recognised by one request at a time.

Sixteen simultaneous uploads of one new image must run the model once: the
first request claims the content's hash, the others wait for the claim and then
find the stored result. Threads of one process share in-memory locks; on
PostgreSQL an advisory lock per hash extends the claim across worker
processes (and machines); on SQLite, which is one machine's, a file lock does
(one of 256 lock files in a ``.claims`` folder beside the database file, chosen by the hash).
"""

from __future__ import annotations

import threading
import weakref
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

STRIPES = 256   # lock files on SQLite: hashes share them, which only ever makes a claim wait a little longer


def _file_locks(keys: list[str]) -> list:
    """Take the lock files of ``keys`` (sorted, each once); the open files hold the locks until closed."""
    import fcntl
    import os

    name = str(connection.settings_dict.get("NAME") or "")
    beside = os.path.dirname(os.path.abspath(name)) if name and not name.startswith((":memory:", "file:")) \
        else str(settings.VAR_DIR)
    folder = os.path.join(beside, ".claims")
    os.makedirs(folder, exist_ok=True)
    held = []
    try:
        for stripe in sorted({zlib.crc32(key.encode()) % STRIPES for key in keys}):
            handle = open(os.path.join(folder, f"{stripe:03d}.lock"), "a+b")
            held.append(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
    except BaseException:
        for handle in held:
            handle.close()
        raise
    return held

_registry_lock = threading.Lock()
_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()


def _process_lock(key: str) -> threading.Lock:
    with _registry_lock:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        return lock


def _advisory_key(sha256: str) -> int:
    """A signed 64-bit key from the hash (PostgreSQL's advisory lock space)."""
    return int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)


@contextmanager
def claimed(hashes: Iterable[str]) -> Iterator[None]:
    """Hold a claim on every hash (taken in sorted order, so two batches cannot deadlock)."""
    keys = sorted(set(hashes))
    locks = [_process_lock(key) for key in keys]  # strong references while held
    acquired: list[threading.Lock] = []
    advisory: list[int] = []
    files: list = []
    try:
        for lock in locks:
            lock.acquire()
            acquired.append(lock)
        if connection.vendor == "sqlite" and keys:
            files = _file_locks(keys)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for key in keys:
                    cursor.execute("SELECT pg_advisory_lock(%s)", [_advisory_key(key)])
                    advisory.append(_advisory_key(key))
        yield
    finally:
        for handle in files:
            handle.close()   # releases its lock
        if advisory and connection.connection is not None:
            with connection.cursor() as cursor:
                for key in advisory:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        for lock in reversed(acquired):
            lock.release()
