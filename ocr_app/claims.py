"""Claims on image contents, so that one content is recognised by one request at a time.

Sixteen simultaneous uploads of one new image must run the model once: the
first request claims the content's hash, the others wait for the claim and then
find the stored result. Threads of one process share in-memory locks; on
PostgreSQL an advisory lock per hash extends the claim across worker
processes. (On SQLite two processes can still both run the model; the unique
constraint on recognitions keeps one row and the loser reads it back.)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import connection

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
    try:
        for lock in locks:
            lock.acquire()
            acquired.append(lock)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for key in keys:
                    cursor.execute("SELECT pg_advisory_lock(%s)", [_advisory_key(key)])
                    advisory.append(_advisory_key(key))
        yield
    finally:
        if advisory and connection.connection is not None:
            with connection.cursor() as cursor:
                for key in advisory:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        for lock in reversed(acquired):
            lock.release()
