"""File names as text: what is written *about* a file (JSON, XML, a record), never what opens it."""

from __future__ import annotations

import os


def unicode_name(name: str | os.PathLike) -> str:
    """A file name or path as valid Unicode: bytes that are not UTF-8 (which Python holds as lone surrogates,
    'surrogateescape', so that the file can still be opened) become U+FFFD. Every other character is kept."""
    return os.fsencode(name).decode("utf-8", "replace")
