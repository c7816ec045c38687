"""Content-addressed files: written once under a name derived from their SHA-256.

A name that exists already holds the same bytes, so it is reused; a file of
the wrong size there is what a crash mid-write leaves, and is replaced. The
caller deletes what ``write_once`` reports as newly written if its database
transaction fails, so no file outlives a rejected request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage


def write_once(name: str, data: bytes) -> bool:
    """Store ``data`` at ``name`` unless it is there already; True if this call wrote it."""
    if default_storage.exists(name):
        if default_storage.size(name) == len(data):
            return False
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:  # another writer finished the same content between our check and our save
        default_storage.delete(saved)
        return False
    return True


def delete_written(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


@contextlib.contextmanager
def local_path(name: str, storage: Storage = default_storage) -> Iterator[str]:
    """A path on this machine to the stored file ``name``, for readers that open it themselves (a PDF's renderer,
    a multi-page TIFF read up to one frame): the file itself on local storage; from a storage without local files
    (S3) a temporary copy, streamed to disk rather than held in memory, removed afterwards."""
    try:
        path = storage.path(name)
    except NotImplementedError:
        path = None
    if path is not None and os.path.isfile(path):   # a path is no promise of a file there (InMemoryStorage)
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="ocr-page-file-", suffix=Path(name).suffix) as copy:
        with storage.open(name, "rb") as remote:
            shutil.copyfileobj(remote, copy, 1 << 20)
        copy.flush()
        yield copy.name
