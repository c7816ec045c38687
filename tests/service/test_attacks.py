"""Hostile uploads to the pages and jobs APIs: each answers a JSON 4xx and stores nothing.

Every file here is tiny and crafted by hand: a PDF whose page tree lies about its
page count, a truncated multi-page TIFF, zips that unpack beyond the job's byte
budget only together, a TIFF with more frames than a job takes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ocr_app.jobs import runner
from ocr_app.jobs.models import Job, Page, PageFile
from recognition.pdf_sandbox import MEMORY_ENV
from tests.crafted_images import CRAFTED
from tests.service import job_pages
from tests.service.conftest import media_files
from tests.service.hostile_files import (
    encrypted_pdf,
    flate_bomb_pdf,
    image_bomb_pdf,
    lying_zip_bomb,
    lzw_bomb_pdf,
    many_frame_tiff,
    nested_flate_bomb_pdf,
)

pytestmark = pytest.mark.django_db

# a well-formed PDF whose page tree says 5 pages and holds 1: pdfium opens it and fails on page 2
LYING_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
             b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 5>>endobj\n"
             b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF")


def _truncated_tiff() -> bytes:
    page = Image.new("L", (200, 200), 255)
    out = io.BytesIO()
    page.save(out, "TIFF", save_all=True, append_images=[page])
    data = out.getvalue()
    return data[:len(data) // 2]   # the second frame's directory is cut off


def _post_job(api, files: list[tuple[str, bytes]], **fields):
    uploads = [SimpleUploadedFile(name, data) for name, data in files]
    return api.post("/api/v1/jobs/", {"files": uploads, **fields}, format="multipart")


def _post_page(api, name: str, data: bytes):
    return api.post("/api/v1/pages/", {"image": SimpleUploadedFile(name, data)}, format="multipart")


def _assert_refused(answer, status: int, code: str | None = None):
    assert answer.status_code == status, answer.content
    assert answer["Content-Type"].startswith("application/json"), answer["Content-Type"]
    if code:
        assert answer.json()["error"]["code"] == code, answer.json()


def _nothing_stored(settings):
    assert Job.objects.count() == Page.objects.count() == PageFile.objects.count() == 0
    assert media_files(settings) == []


@pytest.mark.parametrize("name, data", [("lying.pdf", LYING_PDF), ("cut.tif", _truncated_tiff())])
def test_a_malformed_multi_page_file_alone_is_refused_by_the_jobs_api(api, settings, name, data):
    _assert_refused(_post_job(api, [(name, data)]), 400, "no_readable_pages")
    _nothing_stored(settings)


@pytest.mark.parametrize("name, data", [("lying.pdf", LYING_PDF), ("cut.tif", _truncated_tiff())])
def test_a_malformed_multi_page_file_fails_only_itself_in_a_job(api, name, data):
    good = job_pages.png(job_pages.small_page(0, lines=1))
    answer = _post_job(api, [("good.png", good), (name, data)])
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["pages_total"] == 2 and [f["file"] for f in body["failures"]] == [name]


@pytest.mark.parametrize("name, data", [("lying.pdf", LYING_PDF), ("cut.tif", _truncated_tiff())])
def test_a_malformed_multi_page_file_is_refused_by_the_pages_api(api, settings, name, data):
    answer = _post_page(api, name, data)
    assert 400 <= answer.status_code < 500, answer.content
    assert answer["Content-Type"].startswith("application/json")
    _nothing_stored(settings)


def _zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zips_that_unpack_beyond_the_job_budget_together_are_refused(api, settings):
    """Each zip was checked against the whole budget on its own, so N small zips unpacked to N budgets in memory."""
    settings.OCR_JOB_MAX_BYTES = 300_000
    page = job_pages.png(job_pages.small_page(0, lines=1))
    bomblet = _zip_of({"page.png": page, "padding.png": bytes(200_000)})   # ~ 2 KB packed, 200 KB unpacked
    assert len(bomblet) < 30_000
    _assert_refused(_post_job(api, [("a.zip", bomblet), ("b.zip", bomblet)]), 413, "job_too_large")
    _nothing_stored(settings)
    _assert_refused(_post_job(api, [("a.zip", bomblet), ("big.bin", bytes(120_000))]), 413, "job_too_large")
    assert _post_job(api, [("a.zip", bomblet)]).status_code == 202   # one of them is within the budget


def test_a_file_with_more_pages_than_a_job_takes_is_refused_after_counting_just_past_the_limit(api, settings):
    settings.OCR_JOB_MAX_PAGES = 50
    tiff = many_frame_tiff(3000)
    answer = _post_job(api, [("many.tif", tiff)])
    _assert_refused(answer, 413, "too_many_pages")
    assert "more than 50 pages" in answer.json()["error"]["message"]
    _assert_refused(_post_page(api, "many.tif", tiff), 400, "multi_page_document")
    _nothing_stored(settings)


COUNT_IN_A_SUBPROCESS = """
import sys, django
django.setup()
from ocr_app.errors import ApiError
from ocr_app.jobs.intake import IntakeLimits, read_uploads
data = open(sys.argv[1], "rb").read()
try:
    read_uploads([("many.tif", data)], IntakeLimits(max_pages=2000, max_bytes=500 * 2**20, max_pixels=60_000_000))
except ApiError as exc:
    print(exc.error_code)
"""


def test_a_tiff_of_200000_frames_is_refused_without_walking_them(tmp_path):
    """20 MB of one-pixel frames: counting them all took Pillow minutes of CPU (quadratic seek) in the request."""
    path = tmp_path / "many.tif"
    path.write_bytes(many_frame_tiff(200_000))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocr_project.settings"}
    done = subprocess.run([sys.executable, "-c", COUNT_IN_A_SUBPROCESS, str(path)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "too_many_pages"


def _pdf_of_size(width_pt: str, height_pt: str) -> bytes:
    return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 " + width_pt.encode() + b" " + height_pt.encode()
            + b"]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF")


@pytest.mark.parametrize("width, height", [(1, 100_000), (100_000, 1)])
def test_a_sliver_page_within_the_pixel_limit_is_read_not_crashed_on(api, width, height):
    """A 1 x 100 000 pt PDF page renders to 4 x 416 667 pixels (1.7 Mpx, within the limit): layout scaled
    its short side to 0 pixels and OpenCV's assertion answered 500."""
    answer = _post_page(api, "sliver.pdf", _pdf_of_size(str(width), str(height)))
    assert answer.status_code == 201, answer.content
    assert answer.json()["regions"] == []


def test_noise_specks_too_low_to_be_lines_do_not_fail_the_page(api):
    """Layout finds 'lines' a few pixels high in noise; the line reader refused them and failed the page."""
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (1, 5000), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    answer = _post_page(api, "noise.png", out.getvalue())
    assert answer.status_code == 201, answer.content


def test_too_many_form_fields_is_a_json_400_not_a_500(api, settings):
    page = job_pages.png(job_pages.small_page(0, lines=1))
    fields = {f"field{i}": "x" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    answer = api.post("/api/v1/jobs/", {**fields, "files": [SimpleUploadedFile("p.png", page)]}, format="multipart")
    _assert_refused(answer, 400, "too_many_fields")
    _assert_refused(api.post("/api/v1/pages/", {**fields, "image": SimpleUploadedFile("p.png", page)},
                             format="multipart"), 400, "too_many_fields")
    _nothing_stored(settings)


@pytest.mark.parametrize("job", ["%C2%B2", "%D9%A3", "9" * 5000, "99999999999999999999999", "-1", "%00"])
def test_a_job_filter_that_is_not_an_ascii_id_is_a_form_error_in_the_review_workspace(client, staff, job):
    """``"²".isdigit()`` is true and ``int("²")`` raised: /review/?job=² answered 500 (so did 5000 digits)."""
    client.force_login(staff)
    answer = client.get(f"/review/?job={job}")
    assert answer.status_code == 200 and "Select a valid choice" in answer.content.decode()


@pytest.mark.parametrize("members", [{}, {"folder/": b"", "__MACOSX/._a.png": b"x"}])
def test_a_zip_with_no_files_says_so(api, settings, members):
    """An empty zip was taken for an image (not_an_image), one of folders only gave an empty reason list."""
    answer = _post_job(api, [("empty.zip", _zip_of(members))])
    _assert_refused(answer, 400, "missing_files")
    assert "empty zip" in answer.json()["error"]["message"]
    _nothing_stored(settings)


UNPACK_IN_A_SUBPROCESS = """
import resource, sys, django
django.setup()
from ocr_app.errors import ApiError
from ocr_app.jobs.intake import IntakeLimits, read_uploads
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    sources = read_uploads([("bomb.zip", data)], IntakeLimits(max_pages=2000, max_bytes=500 * 2**20,
                                                              max_pixels=60_000_000))
except ApiError as exc:
    print(exc.error_code, exc.message)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_zip_member_that_lies_about_its_size_is_never_inflated_whole(tmp_path):
    """256 KB of deflate declaring 1000 bytes: ZipFile.read inflated all 256 MiB before cutting it to size."""
    path = tmp_path / "bomb.zip"
    path.write_bytes(lying_zip_bomb(256 * 2**20))
    assert path.stat().st_size < 400_000
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocr_project.settings"}
    done = subprocess.run([sys.executable, "-c", UNPACK_IN_A_SUBPROCESS, str(path)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    outcome, grown_mb = done.stdout.strip().splitlines()
    assert outcome.startswith("no_readable_pages") and "corrupt_zip_member" in outcome
    assert int(grown_mb) < 64, f"unpacking grew the process by {grown_mb} MB"


def test_a_pdf_whose_content_stream_inflates_beyond_a_page_is_refused_before_pdfium_loads_it(api, settings):
    """pdfium inflates a page's content stream whole to load the page: 0.5 MB of PDF took 1 GB to count."""
    settings.OCR_MAX_PAGE_PIXELS = settings.OCR_JOB_MAX_PAGE_PIXELS = 1_000_000   # streams up to 5 MB
    bomb = flate_bomb_pdf(24 * 2**20)
    _assert_refused(_post_page(api, "bomb.pdf", bomb), 413, "image_too_large")
    _assert_refused(_post_job(api, [("bomb.pdf", bomb)]), 400, "no_readable_pages")
    _nothing_stored(settings)
    assert _post_page(api, "small.pdf", flate_bomb_pdf(2 * 2**20)).status_code == 201   # under the bound


def test_content_streams_that_inflate_beyond_a_page_only_together_are_refused(api, settings):
    """Four 2 MiB content streams on one page, each under the 5 MB bound: pdfium inflates them all."""
    settings.OCR_MAX_PAGE_PIXELS = 1_000_000
    _assert_refused(_post_page(api, "bomb.pdf", flate_bomb_pdf(2 * 2**20, streams=4)), 413, "image_too_large")
    _nothing_stored(settings)


COUNT_PDF_IN_A_SUBPROCESS = """
import resource, sys
from recognition.image import ImageError
from recognition.page_loader import count_pages
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    count_pages(data, max_pixels=60_000_000, stop_after=2000)
except ImageError as exc:
    print(exc.code)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_counting_a_flate_bomb_pdf_keeps_memory_bounded(tmp_path):
    path = tmp_path / "bomb.pdf"
    path.write_bytes(flate_bomb_pdf(512 * 2**20))
    assert path.stat().st_size < 600_000
    done = subprocess.run([sys.executable, "-c", COUNT_PDF_IN_A_SUBPROCESS, str(path)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    code, grown_mb = done.stdout.strip().splitlines()
    assert code == "image_too_large" and int(grown_mb) < 64, done.stdout


@pytest.mark.parametrize("build", [nested_flate_bomb_pdf, lzw_bomb_pdf], ids=["deflated twice", "LZW"])
def test_a_content_bomb_pdf_is_refused_by_both_apis_and_fails_only_itself_in_a_job(api, settings, monkeypatch,
                                                                                    build):
    """Content deflated twice, or LZW, passes the zlib stream check; the capped child that loads the page fails."""
    monkeypatch.setenv(MEMORY_ENV, "128")
    bomb = build(256 * 2**20)
    _assert_refused(_post_page(api, "bomb.pdf", bomb), 413, "image_too_large")
    _assert_refused(_post_job(api, [("bomb.pdf", bomb)]), 400, "no_readable_pages")
    _nothing_stored(settings)
    answer = _post_job(api, [("good.png", job_pages.png(job_pages.small_page(0, lines=1))), ("bomb.pdf", bomb)])
    assert answer.status_code == 202, answer.content
    assert [(f["file"], f["code"]) for f in answer.json()["failures"]] == [("bomb.pdf", "image_too_large")]


def test_a_pdf_whose_image_bomb_goes_off_only_when_drawn_fails_its_page_not_the_job(api, monkeypatch):
    """The page counts cheaply (images are not decoded to count), so the job takes it; the render fails it."""
    monkeypatch.setenv(MEMORY_ENV, "64")
    good = job_pages.png(job_pages.small_page(0, lines=1))
    answer = _post_job(api, [("good.png", good), ("drawn.pdf", image_bomb_pdf(12_000))])
    assert answer.status_code == 202 and answer.json()["pages_total"] == 2, answer.content
    assert runner.run_pending() == 2
    pages = {page.source_name: page for page in Page.objects.all()}
    assert pages["good.png"].status == Page.Status.DONE and pages["good.png"].line_count == 1
    assert (pages["drawn.pdf"].status, pages["drawn.pdf"].error_code) == (Page.Status.FAILED, "image_too_large")


def test_an_encrypted_pdf_is_refused_with_its_own_code(api, settings):
    locked = encrypted_pdf(user_password=b"secret")
    answer = _post_page(api, "locked.pdf", locked)
    _assert_refused(answer, 400, "encrypted_pdf")
    assert "password" in answer.json()["error"]["message"]
    answer = _post_job(api, [("locked.pdf", locked)])
    _assert_refused(answer, 400, "no_readable_pages")
    assert "locked.pdf: encrypted_pdf" in answer.json()["error"]["message"]
    _nothing_stored(settings)
    assert _post_page(api, "permissions-only.pdf", encrypted_pdf(user_password=b"")).status_code == 201


CHECK_PAGE_UPLOAD_IN_A_SUBPROCESS = """
import resource, sys, django
if __name__ == "__main__":
    django.setup()
    from ocr_app.errors import ApiError
    from ocr_app.pages.services import check_page_upload
    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        check_page_upload("bomb.pdf", data)
        print("accepted")
    except ApiError as exc:
        print(exc.error_code, exc.status_code)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_the_serving_process_stays_small_while_a_pdf_bomb_is_checked(tmp_path):
    """Under the default cap (960 MiB for a 60 Mpx page) a 1 GiB-twice-deflated page fails in its child; the
    serving process's own peak grows by a few MB (pdfium in it grew by 2 MB per MiB of such content)."""
    path = tmp_path / "bomb.pdf"
    path.write_bytes(nested_flate_bomb_pdf(1024 * 2**20))
    env = {key: value for key, value in os.environ.items() if key != MEMORY_ENV}
    env["DJANGO_SETTINGS_MODULE"] = "ocr_project.settings"
    done = subprocess.run([sys.executable, "-c", CHECK_PAGE_UPLOAD_IN_A_SUBPROCESS, str(path)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    outcome, grown_mb = done.stdout.strip().splitlines()
    assert outcome == "image_too_large 413" and int(grown_mb) < 64, done.stdout


def _page_in(format_name: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(job_pages.small_page(0).image).save(out, format_name)
    return out.getvalue()


# Pillow identifies these by their content; EPS it hands to Ghostscript, an interpreter, where one is installed
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 600 800\nshowpage\n%%EOF\n"


@pytest.mark.parametrize("name, data", [("scan.png", EPS), ("scan.ppm", "PPM"), ("scan.tga", "TGA"),
                                        ("scan.pcx", "PCX")])
def test_formats_outside_the_documented_ones_are_not_decoded_by_any_api(api, settings, name, data):
    from ocr_app.models import Recognition

    data = _page_in(data) if isinstance(data, str) else data
    line = api.post("/api/v1/recognitions/", {"image": SimpleUploadedFile(name, data)}, format="multipart")
    _assert_refused(line, 400, "not_an_image")
    _assert_refused(_post_page(api, name, data), 400, "not_an_image")
    _assert_refused(_post_job(api, [(name, data)]), 400, "no_readable_pages")
    assert Recognition.objects.count() == 0
    _nothing_stored(settings)


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_image_header_gets_the_same_4xx_code_from_the_line_page_and_job_apis(api, settings, name):
    """The core's answer to each file (tests/test_image.py) is what every API says, never a 500: a line upload,
    a page upload, and a job's file, refused at intake or failed when its page is read."""
    from ocr_app.models import Recognition

    data, code = CRAFTED[name]
    status = 413 if code == "image_too_large" else 400
    line = api.post("/api/v1/recognitions/", {"image": SimpleUploadedFile(name, data)}, format="multipart")
    _assert_refused(line, status, code)
    _assert_refused(_post_page(api, name, data), status, code)
    assert Recognition.objects.count() == 0
    _nothing_stored(settings)
    answer = _post_job(api, [("good.png", job_pages.png(job_pages.small_page(0, lines=1))), (name, data)])
    assert answer.status_code == 202, answer.content
    runner.run_pending()
    failures = api.get(answer.json()["url"]).json()["failures"]
    assert [(f["file"], f["code"]) for f in failures] == [(name, code)]


def test_a_page_file_is_stored_under_the_extension_of_the_format_it_was_read_as_never_the_uploaders():
    """A BigTIFF ('II+\\0') or big-endian-first TIFF Pillow reads was not in the intake's own table of magic
    bytes and kept the uploader's suffix ('.html' here) on the stored file: the core's claimed_format names it."""
    from PIL import Image

    from ocr_app.jobs.intake import IntakeLimits, SourceFile, read_uploads

    out = io.BytesIO()
    Image.new("L", (300, 100), 255).save(out, "TIFF", big_tiff=True)
    assert out.getvalue().startswith(b"II+\x00")
    sources = read_uploads([("scan.html", out.getvalue()), ("page.svg", job_pages.png(job_pages.small_page(0)))],
                           IntakeLimits(max_pages=10, max_bytes=2**24, max_pixels=60_000_000))
    assert [(type(s), s.extension) for s in sources] == [(SourceFile, ".tif"), (SourceFile, ".png")]
