"""Content-addressed files: written once under a name derived from their SHA-256.

A name that exists already holds the same bytes, so it is reused; a file of
the wrong size there is what a crash mid-write leaves, and is replaced. The
caller deletes what ``write_once`` reports as newly written if its database
transaction fails, so no file outlives a rejected request.
"""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


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
