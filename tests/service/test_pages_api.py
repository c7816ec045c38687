"""POST /api/v1/pages/ and GET /api/v1/pages/{id}/?format=: one page read in the request, stored for review.

Rendered pages with known lines (``tests.page_rendering``), the shipped model, the
real database and media storage of the test settings.
"""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from lxml import etree
from PIL import Image

from ocr_app import engine, registry
from ocr_app.jobs.models import Page, PageFile, PageLine
from ocr_app.models import Recognition, StoredImage
from recognition.metrics import edit_distance
from recognition.text import normalize_text
from tests.service import job_pages
from tests.service.conftest import media_files

pytestmark = pytest.mark.django_db

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.fixture(scope="module")
def pages():
    return [job_pages.small_page(seed) for seed in range(3)]


def _post(api, data: bytes, name: str = "scan.png", **fields):
    return api.post("/api/v1/pages/", {"image": SimpleUploadedFile(name, data), **fields}, format="multipart")


def _cer(page, text: str) -> float:
    truth = "\n".join(normalize_text(line.text) for line in page.lines)
    return edit_distance(truth, text.strip()) / len(truth)


def _lines(body: dict) -> list[dict]:
    return [line for region in body["regions"] for line in region["lines"]]


def _nothing_stored() -> bool:
    return not (Page.objects.exists() or PageFile.objects.exists() or StoredImage.objects.exists()
                or Recognition.objects.exists() or media_files_now())


def media_files_now():
    from django.conf import settings

    return media_files(settings)


def test_a_page_is_read_in_reading_order_and_each_line_stored_as_a_recognition_of_the_page(api, pages, user):
    answer = _post(api, job_pages.png(pages[0]), name="folio 12.png")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert set(body) >= {"id", "url", "name", "file", "image_sha256", "line_count", "duration_ms", "created_at",
                         "width", "height", "skew_degrees", "model", "text", "regions"}
    assert (body["width"], body["height"], body["file"], body["name"]) == (900, 420, "folio 12.png", "folio_12")
    assert body["model"]["name"] == "arabic-crnn-v2-int8"
    lines = _lines(body)
    assert len(lines) == body["line_count"] == len(pages[0].lines)
    assert _cer(pages[0], body["text"]) < 0.15

    page = Page.objects.get(pk=body["id"])
    assert page.job is None and page.user == user and page.status == Page.Status.DONE
    assert page.file.sha256 == body["image_sha256"] and page.file.page_count == 1
    stored = list(PageLine.objects.filter(page=page).select_related("recognition"))
    assert [(s.line_id, s.polygon) for s in stored] == [(line["id"], line["polygon"]) for line in lines]
    for line, row in zip(lines, stored):
        assert line["recognition_id"] == row.recognition_id
        assert row.recognition.user == user and row.recognition.text == line["text"]
        assert row.recognition.image.height < 200    # the line's crop, reviewable like any line
    listed = {r["id"] for r in api.get("/api/v1/recognitions/").json()["results"]}
    assert {line["recognition_id"] for line in lines} <= listed
    out = io.StringIO()
    call_command("check_storage", "--min-age", "0", stdout=out)   # every stored file has its row


def test_a_page_line_is_stored_as_the_image_it_was_read_from_and_reads_the_same_alone(api):
    """The page reader reads each line from the layout's image (neighbours' ink masked); a box cut from the page
    was stored instead, and that image, sent alone, read differently ("بها" in the page, "مها" alone)."""
    answer = _post(api, job_pages.png(job_pages.small_page(2)))
    assert answer.status_code == 201, answer.content
    stored = {row.recognition.image.sha256: (row.recognition.text, row.recognition.image.file.read())
              for row in PageLine.objects.filter(page_id=answer.json()["id"]).select_related("recognition__image")}
    assert len(stored) >= 3
    recognizer = engine.recognizer_for(registry.active_version())
    read = {sha: recognizer.recognize_one(np.asarray(Image.open(io.BytesIO(png)))).text
            for sha, (_, png) in stored.items()}
    assert read == {sha: text for sha, (text, _) in stored.items()}


def test_the_page_file_is_stored_once_however_often_it_is_sent(api, other_api, pages):
    first = _post(api, job_pages.png(pages[1])).json()
    again = _post(api, job_pages.png(pages[1]), name="copy.png").json()
    theirs = _post(other_api, job_pages.png(pages[1])).json()
    assert first["id"] != again["id"] != theirs["id"]
    assert first["image_sha256"] == again["image_sha256"] == theirs["image_sha256"]
    assert PageFile.objects.count() == 1
    assert len([p for p in media_files_now() if "pages" in p.parts]) == 1
    # the same user's lines are the same recognitions (one per line image, model and user); another user's are theirs
    assert [line["recognition_id"] for line in _lines(first)] == [line["recognition_id"] for line in _lines(again)]
    assert not {line["recognition_id"] for line in _lines(first)} & {line["recognition_id"] for line in _lines(theirs)}


def test_every_format_with_its_content_type(api, pages):
    body = _post(api, job_pages.png(pages[0])).json()
    url = f"/api/v1/pages/{body['id']}/"

    as_json = api.get(url)
    assert as_json["Content-Type"] == "application/json" and as_json.json() == api.get(url + "?format=json").json()
    assert as_json.json()["regions"] == body["regions"]

    text = api.get(url + "?format=txt")
    assert text["Content-Type"] == "text/plain; charset=utf-8" and text.content.decode() == body["text"]

    alto = api.get(url + "?format=alto")
    assert alto["Content-Type"] == "application/xml; charset=utf-8"
    assert 'filename="scan.alto.xml"' in alto["Content-Disposition"]
    etree.XMLSchema(etree.parse(str(SCHEMAS / "alto-4-4.xsd"))).assertValid(etree.fromstring(alto.content))

    page_xml = api.get(url + "?format=page")
    assert page_xml["Content-Type"] == "application/xml; charset=utf-8"
    etree.XMLSchema(etree.parse(str(SCHEMAS / "pagecontent-2019-07-15.xsd"))).assertValid(
        etree.fromstring(page_xml.content))

    hocr = api.get(url + "?format=hocr")
    assert hocr["Content-Type"] == "application/xhtml+xml; charset=utf-8"
    ocr_lines = [e for e in ET.fromstring(hocr.content).iter() if e.get("class") == "ocr_line"]
    assert len(ocr_lines) == len(_lines(body))

    unknown = api.get(url + "?format=pdf")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_request"
    assert "alto" in unknown.json()["error"]["message"]


def test_a_page_is_its_senders_staff_see_all(api, other_api, staff_api, pages):
    url = _post(api, job_pages.png(pages[0])).json()["url"]
    for fmt in ("json", "alto"):
        missing = other_api.get(f"{url}?format={fmt}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert staff_api.get(url).status_code == 200


def test_json_base64_and_a_one_page_pdf(api, pages):
    encoded = base64.b64encode(job_pages.png(pages[2])).decode()
    answer = api.post("/api/v1/pages/", {"image": encoded}, format="json")
    assert answer.status_code == 201, answer.content
    assert _cer(pages[2], answer.json()["text"]) < 0.15
    pdf = _post(api, job_pages.pdf(pages[:1]), name="one.pdf")
    assert pdf.status_code == 201, pdf.content
    # rendered at 300 dpi: its own size (pdfium rounds up a pixel)
    assert abs(pdf.json()["width"] - 900) <= 1 and abs(pdf.json()["height"] - 420) <= 1
    assert _cer(pages[0], pdf.json()["text"]) < 0.15


def test_a_blank_page_answers_201_with_no_lines(api):
    blank = io.BytesIO()
    Image.new("L", (1200, 1600), 255).save(blank, format="PNG")
    answer = _post(api, blank.getvalue(), name="blank.png")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["line_count"], body["regions"], body["text"]) == (0, [], "")
    assert api.get(body["url"] + "?format=alto").status_code == 200


@pytest.mark.parametrize("kind", ["tiff", "pdf"])
def test_a_multi_page_file_is_sent_to_the_jobs_api_and_nothing_is_stored(api, pages, kind):
    data = job_pages.tiff(pages[:2]) if kind == "tiff" else job_pages.pdf(pages[:2])
    answer = _post(api, data, name=f"book.{kind}")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "multi_page_document" and "2 pages" in error["message"]
    assert "/api/v1/jobs/" in error["message"]
    assert _nothing_stored()


def test_bad_pages_get_a_json_4xx_and_leave_nothing(api, pages, settings):
    good = job_pages.png(pages[0])
    cases = {
        "corrupt_image": (_post(api, good[:-700]), 400),
        "not_an_image": (_post(api, b"%!PS-Adobe-3.0 not a page", name="page.ps"), 400),
        "empty_file": (_post(api, b""), 400),
        "missing_image": (api.post("/api/v1/pages/", {"file": SimpleUploadedFile("a.png", good)},
                                   format="multipart"), 400),
        "invalid_base64": (api.post("/api/v1/pages/", {"image": "not base64!"}, format="json"), 400),
        "unknown_model": (_post(api, good, model="no-such-model"), 400),
    }
    settings.OCR_MAX_PAGE_PIXELS = 900 * 420 - 1
    cases["image_too_large"] = (_post(api, good), 413)
    settings.OCR_MAX_PAGE_BYTES = len(good) - 1
    cases["file_too_large"] = (_post(api, good), 413)
    for code, (answer, status) in cases.items():
        assert answer.status_code == status, (code, answer.content)
        assert answer["Content-Type"] == "application/json" and answer.json()["error"]["code"] == code
    assert _nothing_stored()


def test_check_storage_knows_page_files(api, pages, settings):
    """A page file without its row (a worker killed before its commit) is an orphan; one with its row is not."""
    from django.core.management.base import CommandError

    kept = _post(api, job_pages.png(pages[0])).json()["image_sha256"]
    orphan = Path(settings.MEDIA_ROOT) / "pages" / "ff" / f"{'f' * 64}.png"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(job_pages.png(pages[1]))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("check_storage", "--min-age", "0", stdout=out)
    assert f"orphan: pages/ff/{'f' * 64}.png" in out.getvalue() and kept not in out.getvalue()
    call_command("check_storage", "--min-age", "0", "--fix", stdout=io.StringIO())
    assert not orphan.exists() and PageFile.objects.get(sha256=kept).file.storage.exists(
        PageFile.objects.get(sha256=kept).file.name)
    call_command("check_storage", "--min-age", "0", stdout=io.StringIO())


def test_a_page_left_open_by_a_dead_process_is_forgotten_at_start_up_one_a_live_process_reads_is_not(
        api, pages, settings, caplog):
    """A worker killed while its request read the page leaves the page open under its process: start-up (and
    check_storage --fix) forgets it, its row and its file unless another page uses it. The pages that live
    processes are reading (another worker's, this one's) and job pages are left alone."""
    import socket
    import subprocess

    from django.core.management.base import CommandError
    from django.utils import timezone

    from ocr_app.processes import this_process
    from ocr_app.startup import start_serving_process

    ids = [_post(api, job_pages.png(page)).json()["id"] for page in (pages[0], pages[0], pages[1], pages[2])]
    shared, sharing, alone, read_by_a_sibling = ids
    gone = subprocess.Popen(["true"])
    gone.wait()
    sibling = subprocess.Popen(["sleep", "60"])
    try:
        host, now = socket.gethostname(), timezone.now()
        Page.objects.filter(pk__in=[sharing, alone]).update(status="queued", processed_by=f"{host}:{gone.pid}",
                                                            started_at=now)
        Page.objects.filter(pk=shared).update(status="running", processed_by=this_process(), started_at=now)
        Page.objects.filter(pk=read_by_a_sibling).update(status="running", processed_by=f"{host}:{sibling.pid}",
                                                         started_at=now)
        alone_file = PageFile.objects.get(pages=alone)
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("check_storage", "--min-age", "0", stdout=out)   # reported, not yet forgotten
        assert "2 pages of requests whose worker died" in out.getvalue(), out.getvalue()
        with caplog.at_level("WARNING", logger="ocr_app.pages"):
            start_serving_process(warm_up=False)   # a restart
        assert sorted(Page.objects.values_list("pk", flat=True)) == sorted([shared, read_by_a_sibling])
        assert not PageFile.objects.filter(pk=alone_file.pk).exists()
        assert not alone_file.file.storage.exists(alone_file.file.name)
        kept = PageFile.objects.get(pages=shared)   # the other page's file stays
        assert kept.file.storage.exists(kept.file.name)
        assert f"process {host}:{gone.pid} died" in caplog.text and f"forgot page {alone} " in caplog.text
        call_command("check_storage", "--min-age", "0", stdout=io.StringIO())   # nothing left to report
    finally:
        sibling.kill()
        sibling.wait()
    start_serving_process(warm_up=False)   # the sibling is killed too, and the next start-up forgets its page
    assert list(Page.objects.values_list("pk", flat=True)) == [shared]


def test_check_storage_fix_forgets_a_page_of_a_dead_request(api, pages):
    import socket
    import subprocess

    page_id = _post(api, job_pages.png(pages[0])).json()["id"]
    gone = subprocess.Popen(["true"])
    gone.wait()
    Page.objects.filter(pk=page_id).update(status="running", processed_by=f"{socket.gethostname()}:{gone.pid}")
    out = io.StringIO()
    call_command("check_storage", "--min-age", "0", "--fix", stdout=out)
    assert "forgot 1 pages" in out.getvalue() and _nothing_stored_but_lines()


def test_a_page_of_an_earlier_process_with_this_processs_pid_is_forgotten(api, pages):
    """A restarted container hands out the same pids again: the page of the process killed before it is not
    this process's, though it bears its pid (it was started before this process was)."""
    import datetime

    from django.utils import timezone

    from ocr_app.pages.services import forget_pages_of_dead_requests
    from ocr_app.processes import this_process

    ids = [_post(api, job_pages.png(page)).json()["id"] for page in pages[:2]]
    now = timezone.now()
    Page.objects.filter(pk=ids[0]).update(status="running", processed_by=this_process(),
                                          started_at=now - datetime.timedelta(days=1))
    Page.objects.filter(pk=ids[1]).update(status="running", processed_by=this_process(), started_at=now)
    assert forget_pages_of_dead_requests() == 1
    assert list(Page.objects.values_list("pk", flat=True)) == [ids[1]]


def _nothing_stored_but_lines() -> bool:
    """No page and no page file left (the line images and recognitions of a page read once are kept)."""
    return not (Page.objects.exists() or PageFile.objects.exists()
                or any("pages" in path.parts for path in media_files_now()))
