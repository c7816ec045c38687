import zipfile

import pytest
from playwright.sync_api import expect

from ocr_app.jobs import runner
from ocr_app.jobs.models import Job, Page
from ocr_app.models import Recognition, StoredImage
from tests.rendering import png_bytes, render_line
from tests.service import job_pages
from tests.service.browser.conftest import PHONE

pytestmark = pytest.mark.browser


@pytest.fixture
def line_file(tmp_path):
    path = tmp_path / "qala.png"
    path.write_bytes(png_bytes(render_line("قال أبو محمد سنة 45", size=44)))
    return path


def test_upload_a_line_and_read_the_text(visit, user, line_file):
    v = visit(user)
    page = v.page
    page.goto("/")
    page.set_input_files("#image-input", str(line_file))
    expect(page.locator("#preview-image")).to_be_visible()
    expect(page.locator("#preview-name")).to_contain_text("qala.png")
    page.keyboard.press("Tab")  # from the file control to the button
    page.locator("#recognise-button").click()
    expect(page.locator("#result")).to_be_visible()
    recognition = Recognition.objects.get(user=user)
    assert recognition.text  # the real model read something
    expect(page.locator("#result-text")).to_have_text(recognition.text)
    expect(page.locator("#overlay-box")).to_have_text(recognition.text)
    assert page.locator("#result-text").get_attribute("dir") == "rtl"
    page.evaluate("document.fonts.ready")
    v.screenshot("upload-result.png", full_page=True)
    page.locator("#white-background").check()
    expect(page.locator("#overlay")).to_have_class("overlay white")
    with page.expect_download() as download:
        page.locator("#download-txt").click()
    assert download.value.suggested_filename == "qala.txt"
    assert open(download.value.path(), encoding="utf-8").read() == recognition.text + "\n"
    assert page.evaluate("[...document.fonts].some(f => f.family.includes('Noto Naskh') && f.status == 'loaded')")
    assert v.unlabelled_controls() == [] and v.fits_width()
    assert v.outside_requests() == []


def test_errors_are_explained(visit, user, tmp_path, settings):
    anonymous = visit()
    page = anonymous.page
    page.goto("/")
    expect(page.locator("#sign-in-notice")).to_be_visible()
    page.locator("#recognise-button").click()
    expect(page.locator("#upload-error")).to_have_text("Choose an image first.")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not a picture")
    page.set_input_files("#image-input", str(text_file))
    page.locator("#recognise-button").click()
    expect(page.locator("#upload-error")).to_contain_text("Sign in to recognise images.")
    expect(page.locator("#upload-error a")).to_have_attribute("href", "/accounts/login/?next=/")

    signed_in = visit(user, viewport=PHONE)
    page = signed_in.page
    page.goto("/")
    page.set_input_files("#image-input", str(text_file))
    page.locator("#recognise-button").click()
    expect(page.locator("#upload-error")).to_contain_text("That file is not an image we can read")
    expect(page.locator("#result")).to_be_hidden()
    assert not Recognition.objects.exists() and not StoredImage.objects.exists()
    assert signed_in.fits_width() and signed_in.unlabelled_controls() == []

    page.locator("#kind-book").check()            # the same file as a book: the jobs API's error, explained
    page.locator("#recognise-button").click()
    expect(page.locator("#upload-error")).to_contain_text("None of those files is a page image, TIFF, PDF or zip")
    assert not Job.objects.exists()


@pytest.fixture
def job_runner():
    """The in-process job runner `make serve` starts (no broker): pages are read in the background."""
    runner.start(threads=1)
    yield
    runner.stop()


def test_a_pdf_is_read_as_a_book_until_its_results_download(visit, user, tmp_path, job_runner):
    pdf = tmp_path / "kitab.pdf"
    pdf.write_bytes(job_pages.pdf([job_pages.small_page(seed) for seed in range(3)]))
    v = visit(user)
    page = v.page
    page.goto("/")
    page.set_input_files("#image-input", str(pdf))
    expect(page.locator("#kind-book")).to_be_checked()          # a PDF is taken for a book
    expect(page.locator("#file-list")).to_contain_text("kitab.pdf")
    page.locator("#recognise-button").click()
    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#job-download")).to_be_visible(timeout=60_000)
    expect(page.locator("#job-download")).to_be_focused()
    expect(page.locator("#job-status")).to_contain_text("Done: 3 of 3 pages read")
    assert page.locator("#job-progress").evaluate("p => [p.value, p.max]") == [3, 3]
    expect(page.locator("#job-cancel")).to_be_hidden()
    page.evaluate("document.fonts.ready")
    v.screenshot("upload-book.png", full_page=True)
    job = Job.objects.get(user=user)
    assert (job.status, job.name, job.pages_total) == ("done", "kitab.pdf", 3)
    with page.expect_download() as download:
        page.locator("#job-download").click()
    assert download.value.suggested_filename == f"job-{job.pk}-results.zip"
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert {"pages/kitab-p0001.txt", "pages/kitab-p0003.alto.xml", "kitab.book.txt"} <= set(names)
    assert v.unlabelled_controls() == [] and v.fits_width()
    assert v.outside_requests() == []


def test_sign_in_from_the_upload_page(visit, user):
    page = visit().page
    page.goto("/")
    page.get_by_role("link", name="Sign in").first.click()
    page.get_by_label("User name").fill("reader")
    page.get_by_label("Password").fill("pw-reader-1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    expect(page.locator(".account")).to_contain_text("Signed in as reader")


def test_a_page_is_read_and_drawn_back_with_downloads(visit, user, tmp_path):
    scan = tmp_path / "scan.png"
    scan.write_bytes(job_pages.png(job_pages.small_page(5, lines=4)))
    v = visit(user)
    page = v.page
    page.goto("/")
    page.set_input_files("#image-input", str(scan))
    expect(page.locator("#kind-page")).to_be_checked()          # not long and low: taken for a page
    page.locator("#recognise-button").click()
    expect(page.locator("#result")).to_be_visible()
    stored = Page.objects.get(user=user)
    assert stored.line_count == 4
    expect(page.locator("#upload-status")).to_have_text("Done: 4 lines read.")
    expect(page.locator("#result-text")).to_have_text(stored.outputs["txt"].strip())
    boxes = page.locator("#overlay .overlay-box")
    expect(boxes).to_have_count(4)
    first_line = stored.lines.order_by("index").first()
    expect(boxes.first).to_have_text(first_line.recognition.text)
    # the box sits where the line is: its top edge at the polygon's top, in the image's proportions
    page.wait_for_function("(img => img.complete && img.naturalWidth > 0)(document.getElementById('overlay-image'))")
    top = min(y for _, y in first_line.polygon) / stored.height
    image_box, line_box = page.locator("#overlay-image").bounding_box(), boxes.first.bounding_box()
    assert abs((line_box["y"] - image_box["y"]) / image_box["height"] - top) < 0.01
    page.locator("#white-background").check()
    page.evaluate("document.fonts.ready")
    v.screenshot("upload-page-result.png", full_page=True)
    for link, suffix, marker in (("#download-txt", ".txt", first_line.recognition.text),
                                 ("#download-alto", ".alto.xml", "<alto"), ("#download-page", ".page.xml", "PcGts")):
        with page.expect_download() as download:
            page.locator(link).click()
        assert download.value.suggested_filename == "scan" + suffix
        assert marker in open(download.value.path(), encoding="utf-8").read()
    assert v.unlabelled_controls() == [] and v.fits_width()
    assert v.outside_requests() == []
