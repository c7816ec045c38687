"""One page recognised in the request: checked, stored once, read by the jobs' page processing.

A page sent here is a ``Page`` without a job (its own ``user`` and
``model_version``), processed by ``ocr_app.jobs.services.process_page``, the
same code that reads a job's pages: the page file is stored content-addressed
(``PageFile``), each line is a recognition linked to the page with its polygon
(``PageLine``), and the outputs (txt, JSON, ALTO, PAGE, hOCR) are stored on
the page. Everything that can be wrong with the upload is found before
anything is written (the page is decoded first), so a refused page leaves no
row and no file. A request whose worker is killed while it reads the page
leaves it open under a dead process; the next serving process to start on the
machine forgets it (``forget_pages_of_dead_requests``).
"""

from __future__ import annotations

import hashlib
import logging
import socket

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from recognition.image import ImageError
from recognition.page_select import load_page

from ..claims import claimed
from ..errors import ApiError
from ..jobs.intake import SourceFile, count_pages_checked, file_extension, safe_stem
from ..jobs.models import Page, PageFile
from ..jobs.services import discard_written_files, process_page, store_page_file
from ..jobs.storage import delete_written
from ..processes import dead_here, this_process
from ..services import choose_model, image_error

log = logging.getLogger("ocr_app.pages")

MULTI_PAGE_COUNTED = 100   # a multi-page file's pages are counted up to this, to tell the sender


def check_page_upload(name: str, data: bytes) -> SourceFile:
    """The upload as one readable page, or the 4xx error that says why not (decodes it: a truncated
    image is refused here, not after it was stored)."""
    if len(data) > settings.OCR_MAX_PAGE_BYTES:
        raise ApiError("file_too_large", f"the file is {len(data)} bytes; the limit for a page is "
                                         f"{settings.OCR_MAX_PAGE_BYTES}", 413)
    try:
        # counted only so far (a 40 MB TIFF can hold 400 000 frames, and Pillow seeks them in quadratic time)
        count = count_pages_checked(data, settings.OCR_MAX_PAGE_PIXELS, max_pages=MULTI_PAGE_COUNTED)
        if count > 1:
            pages = f"{count} pages" if count <= MULTI_PAGE_COUNTED else f"more than {MULTI_PAGE_COUNTED} pages"
            raise ApiError("multi_page_document",
                           f"the file has {pages}; POST /api/v1/pages/ reads one page. Send multi-page TIFFs, "
                           "PDFs and whole books to the jobs API, POST /api/v1/jobs/ (field 'files'), which reads "
                           "every page in the background and gives each its own outputs")
        load_page(data, 1, settings.OCR_MAX_PAGE_PIXELS)
    except ImageError as exc:
        raise image_error(exc.code, exc.message) from None
    return SourceFile(name, data, hashlib.sha256(data).hexdigest(), file_extension(data), 1)


def recognize_page_upload(user, name: str, data: bytes, model: str | None = None) -> Page:
    """Check, store and recognise one page; returns the done ``Page`` (its lines stored as recognitions)."""
    version = choose_model(model)
    name = "".join(c for c in name if c.isprintable()) or "page"   # stored and shown (PostgreSQL refuses NUL)
    source = check_page_upload(name, data)
    written: list[str] = []
    # The content's claim from writing the file to the commit or the clean-up (see create_job).
    with claimed([source.sha256]):
        try:
            with transaction.atomic():
                page_file = store_page_file(source, written)
                # This process reads the page, below, and no other ever does (runners take job pages only):
                # it is named from the commit on, not only once process_page starts, so that a restart can
                # tell a page whose request died (forget_pages_of_dead_requests).
                page = Page.objects.create(job=None, user=user, model_version=version, index=1,
                                           name=safe_stem(name), source_name=name[:255], file=page_file, number=1,
                                           processed_by=this_process(), started_at=timezone.now())
        except Exception:
            discard_written_files(written)
            raise
    try:
        outcome = process_page(page.pk)
    except Exception:
        _forget(page, written)
        raise
    page.refresh_from_db()
    if outcome != "done":  # the same bytes decoded a moment ago; a page that fails now fails cleanly
        code, message = page.error_code or "unreadable_page", page.error_message or "the page could not be read"
        _forget(page, written)
        raise image_error(code, message)
    log.info("page %s (%s): %d lines for %s", page.pk, name, page.line_count, user)
    return page


def _forget(page: Page, written: list[str]) -> None:
    """Undo a page that could not be read: its row, and its file unless another page uses it."""
    Page.objects.filter(pk=page.pk).delete()
    _forget_file(page.file, written)


def _forget_file(page_file: PageFile, written: list[str]) -> None:
    """Delete ``page_file`` (row, and those of the ``written`` files no row names) unless a page uses it."""
    with claimed([page_file.sha256]):
        try:
            with transaction.atomic():
                PageFile.objects.filter(pk=page_file.pk, pages__isnull=True).delete()
        except (ProtectedError, IntegrityError):   # a page of another request took it meanwhile
            return
        delete_written([name for name in written if not PageFile.objects.filter(file=name).exists()])


def pages_of_dead_requests() -> list[Page]:
    """Pages of POST /api/v1/pages/ left open by a process of this machine that is gone: its request was
    killed while it read the page (SIGKILL, out of memory, a restart's graceful timeout).

    A job-less page is only ever read by the process that created it, in the request, and that process is
    named on the page from its commit on; a page of a live process (another worker's request, or this
    process's own) is never among these. Another machine's processes are not judged."""
    open_pages = Page.objects.filter(job__isnull=True, status__in=Page.OPEN,
                                     processed_by__startswith=f"{socket.gethostname()}:")
    # by the pid and the time the page was started: a restarted container hands out the same pids again,
    # even this process's, and a process started after the page was is not the one reading it
    return [page for page in open_pages.select_related("file") if dead_here(page.processed_by, page.started_at)]


def forget_pages_of_dead_requests() -> int:
    """Forget the pages of requests whose process died (see ``pages_of_dead_requests``) as a request forgets
    a page it could not read: the row, and the page file unless another page uses it. How many were forgotten."""
    forgotten = 0
    for page in pages_of_dead_requests():
        # only if still as judged: open, and named after the same dead process
        _, deleted = Page.objects.filter(pk=page.pk, job__isnull=True, status__in=Page.OPEN,
                                         processed_by=page.processed_by).delete()
        if not deleted.get(Page._meta.label):
            continue
        forgotten += 1
        if page.file is not None:
            _forget_file(page.file, [page.file.file.name])
        log.warning("forgot page %s (%s) of user %s, left %s: process %s died while its request read it",
                    page.pk, page.source_name, page.user_id, page.status, page.processed_by)
    return forgotten
