"""Jobs: create one from uploads, cancel it, and recognise one of its pages.

``process_page`` is what every worker runs, the Celery task and the
in-process runner alike. It is idempotent: a page's lines are written in one
transaction that first moves the page from queued/running to done, so a page
run twice (a worker killed after the commit, a redelivered message, two
workers racing) is stored once. Recognition itself is one call,
``read_page``, into the core's page recogniser.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from recognition.image import ImageError
from recognition.page import PageResult, recognize_page
from recognition.page_select import load_page

from .. import engine
from ..claims import claimed
from ..errors import ApiError
from ..models import Recognition, StoredImage
from ..processes import dead_here, this_process
from ..services import choose_model
from . import dispatch
from .intake import IntakeLimits, SourceFile, page_names, read_uploads
from .models import Job, Page, PageFile, PageLine
from .storage import delete_written, local_path, write_once


def discard_written_files(written: list[str]) -> None:
    """After a failed transaction: delete the files this call wrote, unless a row committed meanwhile uses one."""
    delete_written([name for name in written if not StoredImage.objects.filter(file=name).exists()
                    and not PageFile.objects.filter(file=name).exists()])

log = logging.getLogger("ocr_app.jobs")

FORMATS = ("txt", "alto", "page", "hocr")


def read_page(grey: np.ndarray, recognizer, name: str) -> PageResult:
    """The one call from jobs into page recognition (``recognition.page``)."""
    return recognize_page(grey, recognizer, image_name=name)


def parse_formats(value: str | list[str] | None) -> list[str]:
    """The per-page outputs asked for: all when not asked (None). A value that names none (``formats=`` or
    ``formats=,``) is refused, not read as "no page files": an emptied form field or a script's empty
    variable would otherwise give a job whose results hold the book text alone."""
    if value is None:
        return list(FORMATS)
    items = value if isinstance(value, list) else [value]
    wanted = [f.strip().lower() for item in items for f in str(item).split(",") if f.strip()]
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        raise ApiError("unknown_format", f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if not wanted:
        raise ApiError("unknown_format", f"'formats' names no format; choose from {', '.join(FORMATS)} "
                                         "(comma-separated), or leave the field out for all")
    return [f for f in FORMATS if f in wanted]


def intake_limits() -> IntakeLimits:
    return IntakeLimits(max_pages=settings.OCR_JOB_MAX_PAGES, max_bytes=settings.OCR_JOB_MAX_BYTES,
                        max_pixels=settings.OCR_JOB_MAX_PAGE_PIXELS)


def store_page_file(source: SourceFile, written: list[str]) -> PageFile:
    existing = PageFile.objects.filter(sha256=source.sha256).first()
    if existing is not None:
        return existing
    name = f"pages/{source.sha256[:2]}/{source.sha256}{source.extension}"
    if write_once(name, source.data):
        written.append(name)
    page_file, _ = PageFile.objects.get_or_create(
        sha256=source.sha256, defaults=dict(file=name, extension=source.extension, size_bytes=len(source.data),
                                            page_count=source.page_count))
    return page_file


def job_name(name: str, files: list[tuple[str, bytes]]) -> str:
    """The name a job is stored with: the one given, else its first file's; 200 characters at most."""
    return (name or (files[0][0] if files else ""))[:200]


def create_job(user, files: list[tuple[str, bytes]], name: str = "", model: str | None = None,
               formats: str | list[str] | None = None, idempotency_key: str = "", fingerprint: str = "") -> Job:
    """Check and store the uploads, create the job and its pages, and queue the pages (after commit).

    The job's row is the transaction's first write: a request whose ``idempotency_key`` another one holds
    fails there (IntegrityError, see ``submit_job``) before it stores a file."""
    version = choose_model(model)
    wanted = parse_formats(formats)
    sources = read_uploads(files, intake_limits())
    names = page_names(sources)
    written: list[str] = []
    # Claims on the page contents from writing the files to the commit (or the clean-up): another
    # request storing the same content waits, so a rollback here never deletes a file it just adopted.
    with claimed(s.sha256 for s in sources if isinstance(s, SourceFile)):
        try:
            with transaction.atomic():
                job = Job.objects.create(user=user, name=job_name(name, files), model_version=version,
                                         formats=wanted, pages_total=sum(len(n) for n in names),
                                         idempotency_key=idempotency_key, request_fingerprint=fingerprint)
                pages, index = [], 0
                for source, stems in zip(sources, names):
                    page_file = store_page_file(source, written) if isinstance(source, SourceFile) else None
                    for number, stem in enumerate(stems, start=1):
                        index += 1
                        page = Page(job=job, index=index, name=stem, source_name=source.name[:255], file=page_file,
                                    number=number)
                        if page_file is None:
                            page.status, page.error_code, page.error_message = Page.Status.FAILED, source.code, \
                                source.message
                            page.finished_at = timezone.now()
                        pages.append(page)
                Page.objects.bulk_create(pages)
                queued = list(job.pages.filter(status=Page.Status.QUEUED).values_list("pk", flat=True))
                if not queued:
                    job.status, job.finished_at = Job.Status.FAILED, timezone.now()
                    job.save(update_fields=["status", "finished_at"])
                transaction.on_commit(lambda: dispatch.enqueue_pages(queued))
        except Exception:
            discard_written_files(written)
            raise
    log.info("job %s: %d pages queued for %s", job.pk, len(queued), user)
    return job


def check_idempotency_key(key: str | None) -> str:
    """The ``Idempotency-Key`` header's value ("" when not sent): 1-255 printable ASCII characters, no space
    or comma (a header sent twice reaches Django joined by a comma, and padding would make two keys of one)."""
    if key is None:
        return ""
    if not 1 <= len(key) <= 255 or not all("!" <= c <= "~" and c != "," for c in key):
        raise ApiError("invalid_idempotency_key", "the Idempotency-Key header must be 1 to 255 printable ASCII "
                                                  "characters without spaces or commas, sent once (a fresh UUID "
                                                  "per job is what clients send)")
    return key


def _fingerprint(described: dict) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _described_files(files: list[tuple[str, bytes]]) -> list[list]:
    """Each file's name, size and SHA-256, in upload order (the book's page order)."""
    return [[file_name, len(data), hashlib.sha256(data).hexdigest()] for file_name, data in files]


def request_fingerprint(files: list[tuple[str, bytes]], name: str, model: str | None,
                        formats: str | list[str] | None, described_files: list[list] | None = None) -> str:
    """SHA-256 over the job a request asks for, as ``create_job`` makes it: its files (``_described_files``),
    the job's name as stored (``job_name``: none given is the first file's), the model asked for (an empty one
    is none, as ``choose_model`` reads it: the active model) and the set of formats (``parse_formats``). So one
    request encoded two ways has one fingerprint: ``formats=txt,alto``, two ``formats`` fields or
    ``alto,TXT``; an empty ``model`` field or none. The model is the name sent, not the version it resolves to:
    what the active model (or a name's newest version) is can change between a POST and its retry, which must
    still find its job. Raises ``ApiError`` for formats that ``create_job`` refuses."""
    return _fingerprint({"fingerprint": 2, "files": described_files or _described_files(files),
                         "name": job_name(name, files), "model": model or None,
                         "formats": parse_formats(formats)})


def legacy_request_fingerprint(files: list[tuple[str, bytes]], name: str, model: str | None,
                               formats: str | list[str] | None, described_files: list[list] | None = None) -> str:
    """The fingerprint stored by jobs submitted before requests were normalised (``request_fingerprint``): the
    parameters as sent. A retry of such a job is matched by it, as it was then: only a request sent the same
    way (a client's retry resends its bytes); the same job asked another way stays a 409 for those rows."""
    return _fingerprint({"files": described_files or _described_files(files), "name": name, "model": model,
                         "formats": formats})


def _job_of_key(user, key: str, fingerprints: set[str]) -> Job | None:
    """The job created earlier with ``key`` (None if none); 409 when it was created by another request."""
    job = Job.objects.filter(user=user, idempotency_key=key).first()
    if job is not None and job.request_fingerprint not in fingerprints:
        raise ApiError("idempotency_key_reused", f"this Idempotency-Key created job {job.pk} from other files or "
                                                 "parameters; send a new key for a new job", 409, {"job": job.pk})
    return job


def submit_job(user, files: list[tuple[str, bytes]], name: str = "", model: str | None = None,
               formats: str | list[str] | None = None, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """``create_job`` at most once per user and ``Idempotency-Key``: (the job, whether this call created it).

    A request repeated with its key (a client retrying a POST whose answer it never got) answers the job the
    first one created and stores nothing. Two at once: the database's unique key decides, and the loser, its
    transaction rolled back and its files removed by ``create_job``, answers the winner's job."""
    key = check_idempotency_key(idempotency_key)
    if not key:
        return create_job(user, files, name=name, model=model, formats=formats), True
    described = _described_files(files)
    fingerprint = request_fingerprint(files, name, model, formats, described)
    # the legacy one: a retry of a job submitted before fingerprints were taken of the normalised request
    fingerprints = {fingerprint, legacy_request_fingerprint(files, name, model, formats, described)}
    earlier = _job_of_key(user, key, fingerprints)
    if earlier is not None:
        return earlier, False
    try:
        return create_job(user, files, name=name, model=model, formats=formats, idempotency_key=key,
                          fingerprint=fingerprint), True
    except IntegrityError:
        earlier = _job_of_key(user, key, fingerprints)
        if earlier is None:   # not the key's constraint
            raise
        log.info("job %s: a concurrent request with its Idempotency-Key created it first", earlier.pk)
        return earlier, False


def cancel_job(job: Job) -> Job:
    """Stop a job: its queued pages are never started; a page being read finishes."""
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status__in=Job.UNFINISHED).update(
                status=Job.Status.CANCELLED, finished_at=timezone.now()):
            job.refresh_from_db()
            raise ApiError("job_finished", f"job {job.pk} is already {job.status}", 409)
        Page.objects.filter(job=job, status=Page.Status.QUEUED).update(status=Page.Status.CANCELLED,
                                                                       finished_at=timezone.now())
    job.refresh_from_db()
    return job


def _line_png(line_image: np.ndarray) -> bytes:
    """The line image the page reader read (not a box cut from the page, which holds neighbours' ink and
    reads differently): the stored line then reads the same alone, in a batch or here."""
    out = io.BytesIO()
    Image.fromarray(line_image).save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _store_line_images(pngs: list[bytes], written: list[str]) -> list[StoredImage]:
    """The line crops as content-addressed StoredImages (existing ones reused), in three queries."""
    shas = [hashlib.sha256(png).hexdigest() for png in pngs]
    known = {image.sha256: image for image in StoredImage.objects.filter(sha256__in=set(shas))}
    new = []
    for sha, png in zip(shas, pngs):
        if sha in known or any(image.sha256 == sha for image in new):
            continue
        name = f"lines/{sha[:2]}/{sha}.png"
        if write_once(name, png):
            written.append(name)
        width, height = Image.open(io.BytesIO(png)).size
        new.append(StoredImage(sha256=sha, file=name, extension=".png", width=width, height=height,
                               size_bytes=len(png)))
    if new:
        StoredImage.objects.bulk_create(new, ignore_conflicts=True)   # a racing page may store the same line
        known.update({image.sha256: image for image in StoredImage.objects.filter(sha256__in={i.sha256 for i in new})})
    return [known[sha] for sha in shas]


def _line_recognitions(lines, images: list[StoredImage], version, user, per_line_ms: float) -> list[Recognition]:
    """A recognition per line: new ones created, and the user's earlier one reused where the same line
    image was read by the same model before (one recognition per image, model and user)."""
    def by_image(pks):
        return {r.image_id: r for r in Recognition.objects.filter(image_id__in=pks, model_version=version, user=user)}

    found = by_image({image.pk for image in images})
    new: dict[int, Recognition] = {}
    for line, image in zip(lines, images):
        if image.pk not in found and image.pk not in new:
            new[image.pk] = Recognition(
                image=image, model_version=version, user=user, text=line.text, confidence=line.confidence,
                duration_ms=per_line_ms,
                characters=[{"char": c.char, "confidence": c.confidence} for c in line.characters])
    if new:
        Recognition.objects.bulk_create(new.values(), ignore_conflicts=True)   # a racing job of the same user
        found.update(by_image(new.keys()))
    return [found[image.pk] for image in images]


def _start(page_id: int) -> Page | None:
    """Mark the page running (one more attempt); None if there is nothing to do."""
    page = (Page.objects.select_related("job__model_version", "job__user", "file", "model_version", "user")
            .filter(pk=page_id).first())
    if page is None:
        return None
    if page.status not in Page.OPEN:
        # Done already: a worker that stored it and died before closing its job (Celery delivers the page
        # again, acks_late) leaves the job to this check, or it stays running with every page done.
        finish_job_if_complete(page.job_id)
        return None
    now = timezone.now()
    if page.job is not None and page.job.status == Job.Status.CANCELLED:
        Page.objects.filter(pk=page_id, status__in=Page.OPEN).update(status=Page.Status.CANCELLED, finished_at=now)
        return None
    # Started that often and never finished, the last start's process gone (or the page put back in the queue):
    # a page that takes its worker down. A page still running in a live process (a duplicate delivery) is not it.
    if page.attempts >= settings.OCR_JOB_MAX_STARTS and (
            page.status == Page.Status.QUEUED or dead_here(page.processed_by, page.started_at)):
        log.error("page %s was started %d times and never finished: failed, not started again", page_id,
                  page.attempts)
        fail_page(page_id, "page_never_finishes", f"reading this page was started {page.attempts} times and "
                                                  "never finished (its worker died or failed each time); it is "
                                                  "not tried again")
        return None
    Page.objects.filter(pk=page_id, status__in=Page.OPEN).update(
        status=Page.Status.RUNNING, attempts=F("attempts") + 1, started_at=now,
        processed_by=this_process())
    if page.job is not None:
        Job.objects.filter(pk=page.job_id, status=Job.Status.QUEUED).update(status=Job.Status.RUNNING,
                                                                             started_at=now)
    return page


def process_page(page_id: int) -> str:
    """Recognise one page and store it with its lines; returns what happened (done, failed, skipped)."""
    page = _start(page_id)
    if page is None:
        return "skipped"
    started = time.perf_counter()
    try:
        # by its path: a page of a 300-page book costs that page, not the whole file read and sent to the renderer
        with local_path(page.file.file.name, page.file.file.storage) as path:
            loaded = load_page(path, page.number,
                               settings.OCR_JOB_MAX_PAGE_PIXELS if page.job_id else settings.OCR_MAX_PAGE_PIXELS)
    except ImageError as exc:
        return fail_page(page_id, exc.code, exc.message)
    recognizer = engine.recognizer_for(page.reading_model)
    result = read_page(loaded.grey, recognizer, page.name)
    duration_ms = 1000 * (time.perf_counter() - started)
    outputs = _outputs(result, page.output_formats)
    crops = [_line_png(line.image) for line in result.lines]
    written: list[str] = []
    storing = time.perf_counter()
    try:
        with transaction.atomic():
            won = Page.objects.filter(pk=page_id, status__in=Page.OPEN).update(
                status=Page.Status.DONE, width=result.width, height=result.height, line_count=len(result.lines),
                duration_ms=round(duration_ms, 1), outputs=outputs, finished_at=timezone.now(), error_code="",
                error_message="")
            if not won:  # another worker stored it first, or the page was cancelled meanwhile
                return "skipped"
            per_line_ms = round(duration_ms / max(1, len(result.lines)), 2)
            version, user = page.reading_model, page.owner
            images = _store_line_images(crops, written)
            recognitions = _line_recognitions(result.lines, images, version, user, per_line_ms)
            PageLine.objects.bulk_create([
                PageLine(page_id=page_id, recognition=recognition, index=index, line_id=line.id,
                         polygon=[list(p) for p in line.polygon], baseline=[list(p) for p in line.baseline])
                for index, (line, recognition) in enumerate(zip(result.lines, recognitions), start=1)])
            Page.objects.filter(pk=page_id).update(store_ms=round(1000 * (time.perf_counter() - storing), 1))
    except Exception:
        discard_written_files(written)
        raise
    finish_job_if_complete(page.job_id)
    return "done"


def _outputs(result: PageResult, formats: list[str]) -> dict[str, str]:
    writers = {"txt": result.to_text, "alto": result.to_alto, "page": result.to_page_xml, "hocr": result.to_hocr,
               "json": result.to_dict}
    return {fmt: writers[fmt]() for fmt in {"txt", *formats}}


def fail_page(page_id: int, code: str, message: str) -> str:
    """One unreadable page fails that page, not its job."""
    updated = Page.objects.filter(pk=page_id, status__in=Page.OPEN).update(
        status=Page.Status.FAILED, error_code=code[:50], error_message=message, finished_at=timezone.now())
    page = Page.objects.only("job_id").get(pk=page_id)
    log.warning("page %s failed: %s %s", page_id, code, message)
    finish_job_if_complete(page.job_id)
    return "failed" if updated else "skipped"


def finish_job_if_complete(job_id: int | None) -> None:
    """Close the job once no page is open. Each worker checks after its own commit, so the last one sees all."""
    if job_id is None or Page.objects.filter(job_id=job_id, status__in=Page.OPEN).exists():
        return
    any_done = Page.objects.filter(job_id=job_id, status=Page.Status.DONE).exists()
    Job.objects.filter(pk=job_id, status__in=Job.UNFINISHED).update(
        status=Job.Status.DONE if any_done else Job.Status.FAILED, finished_at=timezone.now())
