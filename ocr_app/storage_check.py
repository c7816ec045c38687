"""Files and rows of stored line images and page files that do not match (see ``manage.py check_storage``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .models import StoredImage
from .storage import INCOMING, TEMP_PREFIX, is_abandoned

IMAGE_FOLDER = "lines"
PAGE_FOLDER = "pages"   # page images and PDFs of jobs and of the pages API (ocr_app.jobs.models.PageFile)


def _referenced(names: list[str] | None = None) -> set[str]:
    """Stored file names that a row refers to (all, or those among ``names``)."""
    from .jobs.models import PageFile

    found = set()
    for model in (StoredImage, PageFile):
        rows = model.objects.all() if names is None else model.objects.filter(file__in=names)
        found.update(rows.values_list("file", flat=True))
    return found


@dataclass
class StorageReport:
    files: int = 0
    rows: int = 0
    orphans: list[str] = field(default_factory=list)  # files without a row (a worker killed before its commit)
    young_orphans: list[str] = field(default_factory=list)  # too recent to judge: an upload may be committing
    missing: list[str] = field(default_factory=list)  # rows whose file is gone
    # pages of POST /api/v1/pages/ whose worker died while it read them: rows that hold their page files for good
    dead_request_pages: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.orphans or self.missing or self.dead_request_pages)


def check_storage(min_age_seconds: float = 300.0) -> StorageReport:
    """Compare the files under MEDIA_ROOT/lines and MEDIA_ROOT/pages with the StoredImage and PageFile rows,
    and find the pages whose request's worker died (they keep a page file that nothing will ever read)."""
    from .pages.services import pages_of_dead_requests

    root = Path(settings.MEDIA_ROOT)
    referenced = _referenced()
    report = StorageReport(rows=len(referenced))
    report.dead_request_pages = [f"page {page.pk} ({page.source_name}, {page.status} by {page.processed_by})"
                                 for page in pages_of_dead_requests()]
    now = time.time()
    on_disk = set()
    paths = [path for folder in (root / IMAGE_FOLDER, root / PAGE_FOLDER) if folder.exists()
             for path in sorted(folder.rglob("*"))]
    for path in paths:
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        on_disk.add(name)
        report.files += 1
        if name in referenced and not path.name.startswith(TEMP_PREFIX):
            continue
        # A temporary file whose writer died will never be renamed into place, whatever its age.
        abandoned = path.parent.name == INCOMING and is_abandoned(path)
        old = now - path.stat().st_mtime >= min_age_seconds
        (report.orphans if abandoned or old else report.young_orphans).append(name)
    report.missing = sorted(referenced - on_disk)
    return report


def remove_orphans(report: StorageReport) -> int:
    """Delete the orphans of ``report`` that still have no row; return how many were deleted."""
    root = Path(settings.MEDIA_ROOT)
    referenced = _referenced(report.orphans)
    removed = 0
    for name in report.orphans:
        if name not in referenced:
            (root / name).unlink(missing_ok=True)
            removed += 1
    return removed
