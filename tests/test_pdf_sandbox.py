"""PDFs are counted and rendered in a child process with capped memory and time (``recognition.pdf_sandbox``).

The hostile files are built here, a few KB each (``tests.service.hostile_files``): content deflated twice
(one layer is all a check before pdfium can inflate), an image that is decoded only when drawn, encryption.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recognition.image import ImageError
from recognition.page_loader import count_pages, iter_pages
from recognition.page_select import load_page
from recognition.pdf_sandbox import MEMORY_ENV, SECONDS_ENV
from tests.service.hostile_files import (
    encrypted_pdf,
    image_bomb_pdf,
    lzw_bomb_pdf,
    lzw_image_pdf,
    nested_flate_bomb_pdf,
    pdf_of,
)

ROOT = Path(__file__).resolve().parents[1]

LOAD_IN_A_SUBPROCESS = """
import resource, sys
from recognition.image import ImageError
from recognition.page_loader import count_pages, iter_pages
from recognition.page_select import load_page
if __name__ == "__main__":
    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for load in (lambda: count_pages(data), lambda: load_page(data, 1), lambda: list(iter_pages(data))):
        try:
            load()
            print("read")
        except ImageError as exc:
            print(exc.code)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _load_in_a_subprocess(tmp_path, data: bytes, memory_mb: int) -> tuple[list[str], int]:
    path = tmp_path / "hostile.pdf"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", LOAD_IN_A_SUBPROCESS, str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PATH": "/usr/bin:/bin", MEMORY_ENV: str(memory_mb)})
    assert done.returncode == 0, done.stderr
    *codes, grown_mb = done.stdout.split()
    return codes, int(grown_mb)


@pytest.mark.parametrize("build, largest", [(nested_flate_bomb_pdf, 2_000), (lzw_bomb_pdf, 3_000_000)],
                         ids=["deflated twice", "LZW"])
def test_a_content_bomb_fails_in_the_child_and_the_caller_stays_small(tmp_path, build, largest):
    """256 MiB of content in 1 KB (deflated twice) or 2.5 MB (LZW, which the zlib check cannot measure) of PDF:
    in-process, pdfium grew the caller by 517 and 526 MB just to count the page."""
    bomb = build(256 * 2**20)
    assert len(bomb) < largest
    codes, grown_mb = _load_in_a_subprocess(tmp_path, bomb, memory_mb=128)
    assert codes == ["image_too_large"] * 3
    assert grown_mb < 64, f"the caller grew by {grown_mb} MB"


def test_an_image_bomb_counts_but_fails_when_drawn_away_from_the_caller(tmp_path):
    """A 12 000 x 12 000 grey image (144 MB decoded) on a small page: in-process pdfium grew the caller by 166 MB
    to draw it. Capped at 96 MiB, pdfium leaves the image out without a word; the blank page is not taken for an
    empty one."""
    codes, grown_mb = _load_in_a_subprocess(tmp_path, image_bomb_pdf(12_000), memory_mb=96)
    assert codes == ["read", "image_too_large", "image_too_large"]
    assert grown_mb < 64, f"the caller grew by {grown_mb} MB"


def test_the_same_bombs_under_the_cap_are_read():
    """The cap is what refuses them: with room to spare the child renders them."""
    assert load_page(nested_flate_bomb_pdf(2**20), 1).grey.shape == (834, 834)
    assert load_page(lzw_bomb_pdf(2**20), 1).grey.shape == (834, 834)
    assert set(load_page(lzw_image_pdf(10), 1).grey.flat) == {128}   # the LZW stream decodes as meant
    grey = load_page(image_bomb_pdf(500), 1).grey
    assert grey.shape == (834, 834) and grey.max() < 30   # the image's black is drawn, not lost


def test_a_page_that_is_a_white_image_is_read_as_blank_not_refused(monkeypatch):
    """A cleaned-up scan of a blank page renders blank too: each image is decoded alone to tell the two apart."""
    monkeypatch.setenv(MEMORY_ENV, "96")
    assert load_page(image_bomb_pdf(3000, grey=b"\xff"), 1).grey.min() == 255
    with pytest.raises(ImageError) as error:
        load_page(image_bomb_pdf(12_000), 1)
    assert "12000x12000-pixel image" in error.value.message


def test_an_encrypted_pdf_is_refused_as_such():
    locked = encrypted_pdf(user_password=b"secret")
    for load in (lambda: count_pages(locked), lambda: load_page(locked, 1), lambda: next(iter_pages(locked))):
        with pytest.raises(ImageError) as error:
            load()
        assert error.value.code == "encrypted_pdf" and "password" in error.value.message


def test_a_pdf_encrypted_only_for_its_permissions_is_read():
    """An empty user password (only an owner password set) opens without asking: such PDFs are common."""
    unlocked = encrypted_pdf(user_password=b"")
    assert count_pages(unlocked) == 1
    assert load_page(unlocked, 1).grey.shape == (834, 834)


def test_a_page_that_takes_too_long_fails_with_its_number(monkeypatch):
    monkeypatch.setenv(SECONDS_ENV, "0.001")
    with pytest.raises(ImageError) as error:
        load_page(nested_flate_bomb_pdf(64 * 2**20), 1)
    assert error.value.code == "image_too_large" and "PDF page 1 took more than" in error.value.message


def test_the_largest_page_allowed_renders_under_the_default_cap():
    """1400 x 1900 pt at 300 dpi is 46 Mpx, under the 60 Mpx limit: the cap derived from that limit fits it."""
    big = pdf_of([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
                  b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 1400 1900]>>"])
    assert load_page(big, 1, max_pixels=60_000_000).grey.shape == (7917, 5834)


def test_pages_of_a_document_come_from_one_child_in_order():
    two = pdf_of([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R 4 0 R]/Count 2>>",
                  b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 200]>>",
                  b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>"])
    assert [(page.number, page.grey.shape) for page in iter_pages(two)] == [(1, (834, 417)), (2, (417, 834))]
    assert load_page(two, 2).grey.shape == (417, 834)
    with pytest.raises(ImageError) as error:
        load_page(two, 3)
    assert error.value.code == "no_such_page"


def test_counting_a_documents_pages_has_one_deadline_for_the_whole_document(monkeypatch):
    """A PDF whose every page costs seconds to open (a shared content bomb) must not hold the counting
    request pages x seconds: the whole count has a deadline of its own."""
    from recognition import pdf_sandbox

    many = pdf_of([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R 4 0 R]/Count 2>>",
                   b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 200]>>",
                   b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>"])
    assert count_pages(many) == 2
    monkeypatch.setattr(pdf_sandbox, "COUNT_SECONDS", 0.0)
    with pytest.raises(ImageError) as error:
        count_pages(many)
    assert error.value.code == "image_too_large" and "opening the PDF's pages took more than" in error.value.message
