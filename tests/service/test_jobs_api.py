"""Jobs through the API, processed by the in-process runner (the no-broker default).

``runner.run_pending()`` is the runner's own loop body, run here until no page
is left; ``test_runner_thread_*`` runs it as the background thread
``make serve`` starts.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from ocr_app.jobs import runner, services
from ocr_app.jobs.models import Job, Page, PageLine
from ocr_app.models import Recognition
from recognition.metrics import edit_distance
from recognition.text import normalize_text
from tests.service import job_pages
from tests.service.conftest import media_files

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def pages():
    return [job_pages.small_page(seed) for seed in range(4)]


def _submit(api, files: dict[str, bytes] | list[tuple[str, bytes]], **fields):
    items = files.items() if isinstance(files, dict) else files
    uploads = [_named(name, data) for name, data in items]
    return api.post("/api/v1/jobs/", {"files": uploads, **fields}, format="multipart")


def _named(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def _cer(truth_lines: list[str], text: str) -> float:
    truth = "\n".join(normalize_text(line) for line in truth_lines)
    return edit_distance(truth, text.strip()) / len(truth)


def test_a_book_of_images_tiff_and_pdf_is_recognised_with_every_output(api, pages):
    answer = _submit(api, {"cover.png": job_pages.png(pages[0]), "scan.tif": job_pages.tiff(pages[1:3]),
                           "book.pdf": job_pages.pdf(pages[2:4])}, name="Kitab")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["status"], body["pages_total"], body["pages_done"], body["name"]) == ("queued", 5, 0, "Kitab")
    assert body["model"]["name"] == "arabic-crnn-v2-int8"

    assert runner.run_pending() == 5
    body = api.get(f"/api/v1/jobs/{body['id']}/").json()
    assert (body["status"], body["pages_done"], body["pages_failed"], body["failures"]) == ("done", 5, 0, [])
    assert body["timings"]["eta_s"] == 0 and body["timings"]["page_recognition_ms"] > 0

    zipped = api.get(body["results_url"])
    assert zipped.status_code == 200 and zipped["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content)))
    names = set(archive.namelist())
    for stem in ("cover", "scan-p0001", "scan-p0002", "book-p0001", "book-p0002"):
        assert {f"pages/{stem}.txt", f"pages/{stem}.alto.xml", f"pages/{stem}.page.xml", f"pages/{stem}.hocr"} <= names
    # the PDF's pages are read as well as the same pages as images
    assert _cer([line.text for line in pages[3].lines], archive.read("pages/book-p0002.txt").decode()) < 0.15
    assert "<alto" in archive.read("pages/cover.alto.xml").decode()
    book = archive.read("Kitab.book.txt").decode()
    assert book.index(archive.read("pages/cover.txt").decode().strip()) < \
        book.index(archive.read("pages/book-p0002.txt").decode().strip())

    rows = archive.read("recognitions.csv").decode("utf-8-sig").splitlines()
    assert rows[0] == "file,page,line,text,confidence,model,time"
    stored = Recognition.objects.filter(page_lines__page__job_id=body["id"])
    assert len(rows) - 1 == stored.count() == sum(Page.objects.values_list("line_count", flat=True)) >= 10
    assert rows[1].startswith("cover.png,1,1,")


def test_page_lines_are_recognitions_owned_by_the_user_and_reviewable(api, pages, user):
    job_id = _submit(api, {"p.png": job_pages.png(pages[0])}).json()["id"]
    runner.run_pending()
    line = PageLine.objects.select_related("recognition", "page").filter(page__job_id=job_id).first()
    assert line.recognition.user == user and line.page.job_id == job_id
    assert len(line.polygon) >= 4 and line.line_id.startswith("r")
    listed = api.get("/api/v1/recognitions/").json()
    assert line.recognition.pk in {r["id"] for r in listed["results"]}
    image = line.recognition.image
    assert image.height < 200 and image.width > 200   # a line crop, not the page


def test_a_zip_with_a_bad_page_fails_that_page_only(api, pages):
    truncated = job_pages.png(pages[1])[:-400]
    archive = job_pages.zipped({"b/02.png": job_pages.png(pages[1]), "a/01.png": job_pages.png(pages[0]),
                                "c/03.png": truncated, "notes.txt": b"not a page", "__MACOSX/._01.png": b"x"})
    body = _submit(api, {"scans.zip": archive}).json()
    assert body["pages_total"] == 4 and body["pages_failed"] == 1   # notes.txt fails at once
    runner.run_pending()
    body = api.get(body["url"]).json()
    assert (body["status"], body["pages_done"], body["pages_failed"]) == ("done", 2, 2)
    reasons = {f["file"]: f["code"] for f in body["failures"]}
    assert reasons == {"scans.zip/c/03.png": "corrupt_image", "scans.zip/notes.txt": "not_an_image"}
    names = list(Page.objects.filter(job_id=body["id"]).values_list("name", flat=True))
    assert names == ["01", "02", "03", "notes"]   # name order inside the zip


def test_zip_members_whose_path_leaves_the_zip_are_failed_pages_not_skipped_unseen(api, pages):
    """A '..' part looked hidden (it starts with a dot) and was dropped without a word; an absolute path was read.
    Each is listed as a failed page that says why; hidden files and macOS's resource forks are still skipped."""
    page = job_pages.png(pages[0])
    archive = job_pages.zipped({"a/01.png": page, "../02.png": page, "a/../../03.png": page, "/etc/04.png": page,
                                "C:/05.png": page, "x\\..\\..\\06.png": page, ".DS_Store": b"x",
                                "__MACOSX/._01.png": b"x", "a..b/07.png": page, "a:08.png": page})
    body = _submit(api, {"scans.zip": archive}).json()
    assert body["pages_total"] == 8 and body["pages_failed"] == 5, body
    reasons = {f["file"]: (f["code"], f["message"]) for f in body["failures"]}
    assert set(reasons) == {"scans.zip/../02.png", "scans.zip/a/../../03.png", "scans.zip//etc/04.png",
                            "scans.zip/C:/05.png", "scans.zip/x\\..\\..\\06.png"}
    assert all(code == "unsafe_zip_path" and "leaves the zip's folder" in message
               for code, message in reasons.values())
    runner.run_pending()
    # a/01.png, a..b/07.png ('..' only inside a name) and a:08.png (a colon alone is no drive)
    assert api.get(body["url"]).json()["pages_done"] == 3


def test_a_phone_jpeg_with_a_gain_map_is_one_page(api, pages):
    """Its HDR gain map (an MPO's second frame) was read as a second page of the book, and the pages API refused
    the photo as multi_page_document."""
    from PIL import Image

    from tests.service.test_recognitions_api import ultra_hdr_jpeg

    photo = ultra_hdr_jpeg(Image.open(io.BytesIO(job_pages.png(pages[0]))))
    body = _submit(api, {"photo.jpg": photo}).json()
    assert body["pages_total"] == 1, body
    runner.run_pending()
    assert api.get(body["url"]).json()["pages_done"] == 1
    page = api.post("/api/v1/pages/", {"image": _named("photo.jpg", photo)}, format="multipart")
    assert page.status_code == 201, page.content


def test_formats_limit_the_outputs(api, pages):
    body = _submit(api, {"p.png": job_pages.png(pages[0])}, formats="alto,txt").json()
    assert body["formats"] == ["txt", "alto"]
    runner.run_pending()
    names = zipfile.ZipFile(io.BytesIO(b"".join(api.get(body["results_url"]).streaming_content))).namelist()
    assert sorted(names) == ["p.book.txt", "pages/p.alto.xml", "pages/p.txt", "recognitions.csv"]


def test_jobs_belong_to_their_user_staff_see_all(api, other_api, staff_api, pages):
    body = _submit(api, {"p.png": job_pages.png(pages[0])}).json()
    for path in (body["url"], body["results_url"]):
        assert other_api.get(path).status_code == 404
    assert other_api.post(f"{body['url']}cancel/").status_code == 404
    assert other_api.get("/api/v1/jobs/").json()["count"] == 0
    assert api.get("/api/v1/jobs/").json()["count"] == 1
    assert staff_api.get(body["url"]).status_code == 200
    assert staff_api.get("/api/v1/jobs/").json()["count"] == 1


def test_cancel_stops_queued_pages(api, pages):
    body = _submit(api, {"scan.tif": job_pages.tiff(pages[:3])}).json()
    assert api.get(body["results_url"]).json()["error"]["code"] == "job_not_finished"
    cancelled = api.post(f"{body['url']}cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["pages_cancelled"] == 3
    assert runner.run_pending() == 0
    assert not Recognition.objects.exists()
    again = api.post(f"{body['url']}cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    assert api.get(body["results_url"]).status_code == 200


def test_a_page_cancelled_mid_job_is_not_started(api, pages):
    body = _submit(api, {"scan.tif": job_pages.tiff(pages[:3])}).json()
    first = runner.claim_next_page()
    services.process_page(first)
    services.cancel_job(Job.objects.get(pk=body["id"]))
    assert runner.run_pending() == 0
    body = api.get(body["url"]).json()
    assert (body["status"], body["pages_done"], body["pages_cancelled"]) == ("cancelled", 1, 2)


def test_a_page_run_twice_is_stored_once(api, pages):
    body = _submit(api, {"p.png": job_pages.png(pages[0])}).json()
    page = Page.objects.get(job_id=body["id"])
    Page.objects.filter(pk=page.pk).update(status=Page.Status.RUNNING, attempts=1)   # its worker died mid-page
    assert services.process_page(page.pk) == "done"
    assert services.process_page(page.pk) == "skipped"   # a redelivered message
    page.refresh_from_db()
    assert page.attempts == 2 and page.lines.count() == page.line_count == Recognition.objects.count() > 0


@pytest.mark.parametrize("fields, code, http", [
    ({}, "missing_files", 400),
    ({"formats": "alto,pdf"}, "unknown_format", 400),
    ({"formats": ""}, "unknown_format", 400),    # gave a job of the book text alone (a missing field gives all)
    ({"formats": " , "}, "unknown_format", 400),
    ({"model": "no-such-model"}, "unknown_model", 400),
])
def test_bad_requests_leave_nothing(api, pages, settings, fields, code, http):
    files = {} if code == "missing_files" else {"p.png": job_pages.png(pages[0])}
    answer = _submit(api, files, **fields)
    assert answer.status_code == http and answer.json()["error"]["code"] == code
    if "formats" in fields:
        assert "txt, alto, page, hocr" in answer.json()["error"]["message"]
    assert not Job.objects.exists() and not Page.objects.exists() and media_files(settings) == []


def test_a_job_too_large_is_refused_before_anything_is_stored(api, pages, settings):
    settings.OCR_JOB_MAX_PAGES = 2
    answer = _submit(api, {"scan.tif": job_pages.tiff(pages[:3])})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_many_pages"
    assert not Job.objects.exists() and media_files(settings) == []


def test_a_job_of_nothing_but_unreadable_files_is_refused(api, settings):
    answer = _submit(api, {"a.txt": b"plain text", "b.pdf": b"%PDF-1.4 broken"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "no_readable_pages" and "a.txt: not_an_image" in error["message"]
    assert "b.pdf: corrupt_pdf" in error["message"]
    assert not Job.objects.exists() and media_files(settings) == []


def test_the_same_book_twice_is_stored_once(api, pages, settings):
    data = job_pages.pdf(pages[:2])
    _submit(api, {"book.pdf": data})
    _submit(api, {"again.pdf": data})
    assert len([p for p in media_files(settings) if p.suffix == ".pdf"]) == 1


def test_a_book_on_a_storage_without_local_files_is_read_from_a_temporary_copy(api, pages, settings):
    """Pages are read from the stored file's path (the PDF renderer's child opens it); a storage with no files on
    this machine (S3; here Django's in-memory storage) has none, so each page's task streams the file to a
    temporary copy and removes it after."""
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    copies_before = set(Path(tempfile.gettempdir()).glob("ocr-page-file-*"))
    answer = _submit(api, {"scan.tif": job_pages.tiff(pages[:2]), "book.pdf": job_pages.pdf(pages[2:4])})
    assert answer.status_code == 202, answer.content
    assert runner.run_pending() == 4
    body = api.get(f"/api/v1/jobs/{answer.json()['id']}/").json()
    assert (body["status"], body["pages_done"], body["failures"]) == ("done", 4, [])
    assert all(page.line_count >= 2 for page in Page.objects.all())
    assert set(Path(tempfile.gettempdir()).glob("ocr-page-file-*")) == copies_before


@pytest.mark.django_db(transaction=True)
def test_runner_thread_processes_jobs_in_process(api, pages):
    runner.start(threads=1)
    try:
        body = _submit(api, {"p.png": job_pages.png(pages[0]), "q.png": job_pages.png(pages[1])}).json()
        deadline = time.monotonic() + 30
        while api.get(body["url"]).json()["status"] != "done":
            assert time.monotonic() < deadline, api.get(body["url"]).json()
            time.sleep(0.2)
    finally:
        runner.stop()
    assert Page.objects.filter(job_id=body["id"], status="done").count() == 2


@pytest.mark.django_db(transaction=True)
def test_runner_takes_over_a_page_whose_process_died(api, pages, settings):
    """A restarted server: a page left 'running' by a dead process is run again once its lease lapses."""
    body = _submit(api, {"p.png": job_pages.png(pages[0])}).json()
    page_id = runner.claim_next_page()
    Page.objects.filter(pk=page_id).update(status=Page.Status.RUNNING, attempts=1)
    assert runner.claim_next_page() is None          # leased to the (dead) process
    settings.OCR_JOB_LEASE_SECONDS = 0
    from django.utils import timezone

    Page.objects.filter(pk=page_id).update(claimed_until=timezone.now())
    time.sleep(0.01)
    assert runner.run_pending() == 1
    assert api.get(body["url"]).json()["status"] == "done"


def test_a_restarted_server_queues_the_pages_its_killed_process_was_reading(api, pages):
    import socket
    import subprocess

    body = _submit(api, {"p.png": job_pages.png(pages[0])}).json()
    gone = subprocess.Popen(["true"])
    gone.wait()
    Page.objects.filter(job_id=body["id"]).update(status=Page.Status.RUNNING, attempts=1,
                                                  processed_by=f"{socket.gethostname()}:{gone.pid}")
    assert runner.release_pages_of_dead_processes() == 1
    assert runner.run_pending() == 1
    assert api.get(body["url"]).json()["status"] == "done"


def test_a_cancelled_jobs_page_whose_process_died_is_cancelled_not_queued_for_good(api, pages):
    """Cancelling leaves the page being read to finish; if its process dies instead, the page went back to the
    queue, which no runner takes for a cancelled job: the job showed a page open for ever."""
    import socket
    import subprocess

    body = _submit(api, {"a.png": job_pages.png(pages[0]), "b.png": job_pages.png(pages[1])}).json()
    reading = Page.objects.filter(job_id=body["id"]).order_by("index").first()
    gone = subprocess.Popen(["true"])
    gone.wait()
    Page.objects.filter(pk=reading.pk).update(status=Page.Status.RUNNING, attempts=1,
                                              processed_by=f"{socket.gethostname()}:{gone.pid}")
    assert api.post(f"{body['url']}cancel/").status_code == 200
    assert runner.release_pages_of_dead_processes() == 1
    assert set(Page.objects.filter(job_id=body["id"]).values_list("status", flat=True)) == {Page.Status.CANCELLED}
    job = api.get(body["url"]).json()
    assert job["status"] == "cancelled" and job["pages_running"] == 0 and job.get("pages_queued", 0) == 0


def test_the_admin_lists_jobs_with_progress(api, pages, staff):
    from django.test import Client

    _submit(api, {"scan.tif": job_pages.tiff(pages[:2])}, name="Diwan")
    runner.run_pending()
    browser = Client()
    browser.force_login(staff)
    listing = browser.get("/admin/ocr_app/job/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "Diwan" in html and '<progress max="100" value="100"></progress> 2 / 2' in html
    job = Job.objects.get(name="Diwan")
    detail = browser.get(f"/admin/ocr_app/job/{job.pk}/change/")
    assert detail.status_code == 200 and "scan-p0002" in detail.content.decode()


def test_the_api_schema_documents_the_jobs_endpoints(api):
    schema = api.get("/api/schema/?format=json").json()
    assert {"/api/v1/jobs/", "/api/v1/jobs/{id}/", "/api/v1/jobs/{id}/cancel/",
            "/api/v1/jobs/{id}/results.zip"} <= set(schema["paths"])


def test_a_broker_that_does_not_answer_loses_no_job(api, pages, settings, django_capture_on_commit_callbacks):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/13"   # nothing listens on port 1
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        answer = _submit(api, {"p.png": job_pages.png(pages[0])})
    assert len(callbacks) == 1   # the send was tried, and failed
    assert answer.status_code == 202
    assert Page.objects.get(job_id=answer.json()["id"]).status == Page.Status.QUEUED


def test_the_same_page_in_two_jobs_reuses_the_users_recognitions(api, other_api, pages):
    """One recognition per line image, model and user: a page read again links to the lines read before."""
    first = _submit(api, {"p.png": job_pages.png(pages[0])}).json()
    second = _submit(api, {"again.png": job_pages.png(pages[0])}).json()
    third = _submit(other_api, {"p.png": job_pages.png(pages[0])}).json()
    runner.run_pending()
    for job in (first, second, third):
        assert api.get(job["url"]).status_code in (200, 404)
        assert Job.objects.get(pk=job["id"]).status == "done"
    lines = [set(PageLine.objects.filter(page__job_id=job["id"]).values_list("recognition_id", flat=True))
             for job in (first, second, third)]
    assert lines[0] == lines[1] and len(lines[0]) == Page.objects.get(job_id=first["id"]).line_count
    assert not lines[0] & lines[2]   # another user's are their own


@pytest.mark.parametrize("field", ["model", "name", "formats"])
def test_control_characters_in_fields_are_a_400(api, pages, field):
    answer = _submit(api, {"p.png": job_pages.png(pages[0])}, **{field: "a\x00b"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_request"
    assert not Job.objects.exists()


def test_recognitions_csv_in_the_results_keeps_formulas_as_text(api, pages, staff):
    """A file name is the uploader's and a corrected text a reviewer's: neither may run as a spreadsheet formula
    in whoever opens the results (the recognitions CSV export guards its cells the same way)."""
    from ocr_app import services as line_services

    body = _submit(api, {"=1+2.png": job_pages.png(pages[0])}).json()
    runner.run_pending()
    first = Recognition.objects.filter(page_lines__page__job_id=body["id"]).order_by("page_lines__index").first()
    line_services.review(first, staff, "=HYPERLINK(\"http://example.org\")")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(api.get(body["results_url"]).streaming_content)))
    import csv

    rows = list(csv.reader(io.StringIO(archive.read("recognitions.csv").decode("utf-8-sig"))))
    assert rows[1][0] == "'=1+2.png" and rows[1][3] == "'=HYPERLINK(\"http://example.org\")"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows[1:] for cell in row)


def _zip_of_one_page(page_png: bytes) -> tuple[bytes, int, int]:
    """A deflated zip of one page; the offsets of its member's data and of its central directory."""
    import struct

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.png", page_png)
    data = out.getvalue()
    name_len, extra_len = struct.unpack("<HH", data[26:30])
    return data, 30 + name_len + extra_len, data.index(b"PK\x01\x02")


def _damaged_deflate_stream(data, start, central):
    return data[:start] + b"\xff\xff\xff\xff" + data[start + 4:]      # block type 11: zlib.error


def _deflate_stream_cut_short(data, start, central):
    return data[:start + 8] + b"\x00" * (central - start - 8) + data[central:]   # EOFError or zlib.error


def _directory_offset_past_the_end(data, start, central):
    import struct

    end = data.rindex(b"PK\x05\x06")
    offset = struct.unpack("<I", data[end + 16:end + 20])[0]
    return data[:end + 16] + struct.pack("<I", offset + 100_000) + data[end + 20:]   # "negative seek value"


def _damaged_lzma_member(data, start, central):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_LZMA) as archive:
        archive.writestr("a.png", job_pages.png(job_pages.small_page(0)))
    lzma_zip = bytearray(out.getvalue())
    lzma_zip[40:60] = b"\xff" * 20            # inside the member's LZMA stream: LZMAError, no OSError
    return bytes(lzma_zip)


def _needs_a_newer_zip_version(data, start, central):
    return data[:central + 6] + b"\xff\x00" + data[central + 8:]      # NotImplementedError while opening


@pytest.mark.parametrize("damage", [_damaged_deflate_stream, _deflate_stream_cut_short,
                                    _directory_offset_past_the_end, _needs_a_newer_zip_version,
                                    _damaged_lzma_member])
def test_a_damaged_zip_is_a_json_400_never_a_500(api, pages, settings, damage):
    """zipfile raises zlib.error, EOFError, ValueError and NotImplementedError besides BadZipFile: each was a 500
    (found by mutation fuzzing)."""
    answer = _submit(api, {"book.zip": damage(*_zip_of_one_page(job_pages.png(pages[0])))})
    assert answer.status_code == 400 and answer["Content-Type"].startswith("application/json"), answer.content[:300]
    error = answer.json()["error"]
    # the zip unreadable, or its one page: the message says which and why; nothing is kept
    assert error["code"] == "corrupt_zip" or (error["code"] == "no_readable_pages"
                                              and "book.zip/a.png: corrupt_zip_member" in error["message"]), error
    assert Job.objects.count() == 0 and not media_files(settings)


class _WorkerDied(BaseException):
    """The process ending at one exact point (a SIGKILL there cannot be timed from a test)."""


@pytest.mark.parametrize("recovery", ["the page delivered again", "the runner starting again"])
def test_a_worker_dying_between_storing_the_last_page_and_closing_the_job_does_not_leave_it_running(
        api, pages, monkeypatch, recovery):
    """process_page commits the page done, then closes the job: dying between the two left every page done and
    the job running for good (the page delivered again was 'skipped'; the runner claims only open pages)."""
    answer = _submit(api, {"p.png": job_pages.png(pages[0])})
    assert answer.status_code == 202
    page_id = Page.objects.get().pk

    def dies(job_id):
        raise _WorkerDied()

    with monkeypatch.context() as patch:
        patch.setattr(services, "finish_job_if_complete", dies)
        with pytest.raises(_WorkerDied):
            services.process_page(page_id)
    assert Page.objects.get().status == Page.Status.DONE and Job.objects.get().status == Job.Status.RUNNING
    if recovery == "the page delivered again":
        assert services.process_page(page_id) == "skipped"   # nothing read twice
    else:
        assert runner.close_jobs_left_open() == 1
    body = api.get(answer.json()["url"]).json()
    assert body["status"] == "done" and body["pages_done"] == 1
    assert api.get(body["results_url"]).status_code == 200
    assert runner.close_jobs_left_open() == 0


def test_closing_jobs_left_open_leaves_jobs_with_open_pages_alone(api, pages):
    answer = _submit(api, {"a.png": job_pages.png(pages[0]), "b.png": job_pages.png(pages[1])})
    first = Page.objects.order_by("index").first()
    services.process_page(first.pk)
    assert runner.close_jobs_left_open() == 0
    assert api.get(answer.json()["url"]).json()["status"] == "running"


def test_a_page_that_never_finishes_is_failed_not_started_for_ever(api, pages, settings):
    """A page whose reading takes its worker down (killed each time) was started again on every redelivery or
    restart, taking down worker after worker."""
    answer = _submit(api, {"a.png": job_pages.png(pages[0]), "b.png": job_pages.png(pages[1])})
    poison = Page.objects.order_by("index").first()
    Page.objects.filter(pk=poison.pk).update(attempts=settings.OCR_JOB_MAX_STARTS)   # killed that many times
    assert runner.run_pending() == 2
    poison.refresh_from_db()
    assert poison.status == Page.Status.FAILED and poison.error_code == "page_never_finishes"
    assert poison.attempts == settings.OCR_JOB_MAX_STARTS   # not started once more
    body = api.get(answer.json()["url"]).json()
    assert body["status"] == "done" and body["pages_done"] == 1 and body["pages_failed"] == 1


def test_the_jobs_limit_is_checked_before_the_files_are_read(api, pages, settings, monkeypatch):
    """Every upload was read into memory (up to 33 x 500 MB) before the job's total was checked."""
    from ocr_app.jobs import apis

    reached = []   # without the early check every upload is read, then handed to the service, which refuses
    real_create_job = apis.services.create_job
    monkeypatch.setattr(apis.services, "create_job", lambda *a, **k: reached.append(1) or real_create_job(*a, **k))
    settings.OCR_JOB_MAX_BYTES = 3 * len(job_pages.png(pages[0])) // 2
    answer = _submit(api, {"a.png": job_pages.png(pages[0]), "b.png": job_pages.png(pages[0]),
                           "c.png": job_pages.png(pages[0])})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "job_too_large"
    assert reached == [] and Job.objects.count() == 0


def test_a_page_running_in_a_live_process_is_not_failed_for_its_many_starts(api, pages, settings):
    """A duplicate delivery (a lease retaken, a broker's visibility timeout) starts a page still being read:
    that is no page that kills its worker, and failing it would lose a readable page."""
    from ocr_app.processes import this_process

    answer = _submit(api, {"a.png": job_pages.png(pages[0])})
    page = Page.objects.get()
    Page.objects.filter(pk=page.pk).update(status=Page.Status.RUNNING, attempts=settings.OCR_JOB_MAX_STARTS,
                                           processed_by=this_process())
    assert services.process_page(page.pk) == "done"
    assert api.get(answer.json()["url"]).json()["status"] == "done"


def test_a_queued_page_of_a_cancelled_job_is_cancelled_by_the_runner(api, pages):
    """Put back in the queue as its job was cancelled (two statements apart): the runner cancels it."""
    answer = _submit(api, {"a.png": job_pages.png(pages[0]), "b.png": job_pages.png(pages[1])})
    assert api.post(f"{answer.json()['url']}cancel/").status_code == 200
    Page.objects.filter(job_id=answer.json()["id"], index=1).update(status=Page.Status.QUEUED)
    assert runner.run_pending() == 1
    assert set(Page.objects.values_list("status", flat=True)) == {Page.Status.CANCELLED}
    assert runner.run_pending() == 0
