"""Line images on disk, content-addressed: the file name is the content's SHA-256.

Two writers of the same content write the same bytes to the same name, so the
second one is harmless: it never gets a ``_AbCdEfG`` suffix (Django's default
for an existing name), and a file left behind by a worker killed before its
database commit is simply adopted by the next upload of that content (or
removed by ``manage.py check_storage --fix``). Each write goes to a temporary
file in one ``.incoming`` folder beside the images and is renamed into place,
so a reader never sees half a file. A temporary file's name says which host
and process writes it: one whose process has died (a killed worker) is swept
when a serving process starts, and ``check_storage`` counts it as an orphan.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from django.core.files.storage import FileSystemStorage

from .processes import process_alive

TEMP_PREFIX = ".partial-"
INCOMING = ".incoming"


def _writer_prefix() -> str:
    return f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"


def is_abandoned(temp_path: Path) -> bool:
    """A temporary file whose writer, a process on this host, is gone (other hosts' are not judged)."""
    host, _, rest = temp_path.name[len(TEMP_PREFIX):].rpartition("-")[0].rpartition("-")
    if host != socket.gethostname() or not rest.isdigit():
        return False
    try:
        written_at = temp_path.stat().st_mtime
    except FileNotFoundError:
        return False  # renamed into place or removed meanwhile
    return not process_alive(int(rest), written_at)


def incoming_folder(root: str | Path) -> Path:
    return Path(root) / "lines" / INCOMING


def sweep_abandoned(root: str | Path) -> int:
    """Delete the temporary files of dead writers on this host; how many were deleted."""
    folder = incoming_folder(root)
    removed = 0
    for path in folder.glob(f"{TEMP_PREFIX}*") if folder.exists() else []:
        if is_abandoned(path):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class ContentAddressedStorage(FileSystemStorage):
    def get_available_name(self, name, max_length=None):
        return name  # the name is the content's hash: the same name means the same bytes

    def _save(self, name, content):
        full_path = Path(self.path(name))
        full_path.parent.mkdir(parents=True, exist_ok=True)
        incoming = incoming_folder(self.location)
        incoming.mkdir(parents=True, exist_ok=True)
        handle, temp_path = tempfile.mkstemp(prefix=_writer_prefix(), dir=incoming)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp_path, self.file_permissions_mode or 0o644)
            os.replace(temp_path, full_path)  # atomic: the old bytes or the new (identical) ones
        except BaseException:
            Path(temp_path).unlink(missing_ok=True)
            raise
        return str(name).replace("\\", "/")
