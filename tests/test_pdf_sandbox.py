"""PDFs are counted and rendered in a child process with capped memory and time (``recognition.pdf_sandbox``).

The hostile files are built here, a few KB each (``tests.service.hostile_files``): content deflated twice
(one layer is all a check before pdfium can inflate), an image that is decoded only when drawn, encryption.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
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
    painted_over_pdf,
    pdf_of,
)

ROOT = Path(__file__).resolve().parents[1]

# The caller's own peak RSS (VmHWM): ru_maxrss would count the peak of the pytest process that started it too.
PEAK_MB = """
def peak_mb():
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
"""

LOAD_IN_A_SUBPROCESS = PEAK_MB + """
import sys
from recognition.image import ImageError
from recognition.page_loader import count_pages, iter_pages
from recognition.page_select import load_page
if __name__ == "__main__":
    data = open(sys.argv[1], "rb").read()
    before = peak_mb()
    for load in (lambda: count_pages(data), lambda: load_page(data, 1), lambda: list(iter_pages(data))):
        try:
            load()
            print("read")
        except ImageError as exc:
            print(exc.code)
    print(peak_mb() - before)
"""


def _load_in_a_subprocess(tmp_path, data: bytes, memory_mb: int) -> tuple[list[str], int]:
    path = tmp_path / "hostile.pdf"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", LOAD_IN_A_SUBPROCESS, str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PATH": "/usr/bin:/bin", MEMORY_ENV: str(memory_mb)})
    assert done.returncode == 0, done.stderr
    *codes, grown_mb = done.stdout.split()
    return codes, int(grown_mb)


LOAD_A_PAGE_IN_A_SUBPROCESS = PEAK_MB + """
import sys
from recognition.page_select import load_page
if __name__ == "__main__":
    path, given, small = sys.argv[1:]
    load_page(small, 1)   # the forkserver and what the loader imports, before measuring
    before = peak_mb()
    source = path if given == "path" else open(path, "rb").read()
    page = load_page(source, 2)
    print(page.grey.shape[0], page.grey.shape[1], peak_mb() - before)
"""


def _book_pdf(path: Path, unused_bytes: int) -> None:
    """Two 100 x 200 pt pages and one unused stream of ``unused_bytes`` (a scanned book's bulk: images of pages not
    asked for), written a MiB at a time."""
    head = pdf_of([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R 4 0 R]/Count 2>>",
                   b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 200]>>",
                   b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>"])
    body = head[:head.index(b"xref\n")]
    offsets = [int(line.split()[0]) for line in head[head.index(b"xref\n"):].split(b"\n")[3:7]]
    with open(path, "wb") as out:
        out.write(body)
        offsets.append(out.tell())
        out.write(b"5 0 obj<</Length %d>>stream\n" % unused_bytes)
        chunk = bytes(2**20)
        for done in range(0, unused_bytes, len(chunk)):
            out.write(chunk[:min(len(chunk), unused_bytes - done)])
        out.write(b"\nendstream endobj\n")
        xref = out.tell()
        out.write(b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets))
        out.write(b"trailer<</Size 6/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF" % xref)


def test_a_page_of_a_pdf_given_by_its_path_is_rendered_without_the_caller_reading_the_file(tmp_path):
    """A job reads one page of a big book: given the path, only the path goes to the renderer's child, which opens
    the file itself. Given the bytes, the caller held the file and a pickled copy of it for the child, a page."""
    book, small = tmp_path / "book.pdf", tmp_path / "small.pdf"
    _book_pdf(book, 96 * 2**20)
    small.write_bytes(pdf_of([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
                              b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]>>"]))
    grown = {}
    for given in ("path", "bytes"):
        done = subprocess.run([sys.executable, "-c", LOAD_A_PAGE_IN_A_SUBPROCESS, str(book), given, str(small)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        height, width, grown[given] = map(int, done.stdout.split())
        assert (height, width) == (417, 834)   # page 2, 200 x 100 pt at 300 dpi
    assert grown["path"] < 16, f"the caller grew by {grown['path']} MB reading a page by its path"
    assert grown["bytes"] > 96, f"the caller grew by only {grown['bytes']} MB with the bytes: the measure is blind"


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


def test_a_page_that_burns_cpu_is_killed_by_its_cpu_cap_and_fails_with_its_number(monkeypatch):
    """1 KB of PDF that takes ~40 s of CPU a page to draw, in little memory: the kernel ends the child (SIGXCPU)
    once the page has had its CPU seconds, and the caller is told which page and why."""
    monkeypatch.setenv(SECONDS_ENV, "1")
    started = time.monotonic()
    with pytest.raises(ImageError) as error:
        load_page(painted_over_pdf(10_000, pages=2), 2)
    assert error.value.code == "image_too_large"
    assert error.value.message == "PDF page 2 took more than 1 s of CPU time to render"
    assert time.monotonic() - started < 10


def test_a_page_the_cpu_cap_has_not_ended_fails_at_the_callers_deadline(monkeypatch):
    """The caller's own clock, for a child that is not using its CPU time up (a machine busy with other work)."""
    from recognition import pdf_sandbox

    monkeypatch.setenv(SECONDS_ENV, "1")
    monkeypatch.setattr(pdf_sandbox, "WALL_SECONDS_PER_CPU_SECOND", 0.05)   # 0.1 s: far less than the CPU cap
    with pytest.raises(ImageError) as error:
        load_page(painted_over_pdf(10_000), 1)
    assert error.value.code == "image_too_large"
    assert error.value.message == "PDF page 1 took more than 1 s to render"


def test_a_childs_exit_status_is_read_by_the_call_that_started_it_alone(monkeypatch):
    """While a page is killed for its CPU time, another thread waits for every child of this process (as each
    ``Process.start()``, another thread's PDF among them, polls them all). A forkserver child's exit status is a
    few bytes read once: had that thread read them, or read the end of the pipe after them, the caller would have
    been told 255, a renderer that ran out of memory, instead of its CPU time."""
    monkeypatch.setenv(SECONDS_ENV, "1")
    rendering, outcome = threading.Event(), []

    def load_the_burning_page() -> None:
        try:
            load_page(painted_over_pdf(10_000), 1)
        except ImageError as exc:
            outcome.append(exc.message)
        finally:
            rendering.set()

    reader = threading.Thread(target=load_the_burning_page)
    reader.start()
    others_joined = 0
    from recognition import pdf_sandbox

    while not rendering.is_set():
        # Under the start lock, as any caller in the product would be: between Process.start() and its removal
        # from multiprocessing's list the child is briefly visible to an unlocked active_children().
        with pdf_sandbox._STARTING:
            children = multiprocessing.active_children()
        for child in children:
            child.join()
            others_joined += 1
        time.sleep(0.001)
    reader.join()
    assert outcome == ["PDF page 1 took more than 1 s of CPU time to render"]
    assert others_joined == 0


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


def test_a_stored_pdf_that_is_gone_is_unavailable_not_corrupt_and_the_path_stays_private(tmp_path):
    from recognition.pdf_sandbox import pdf_pages

    missing = tmp_path / "secret-server-folder" / "book.pdf"
    with pytest.raises(ImageError) as caught:
        list(pdf_pages(str(missing), max_pixels=10_000_000))
    assert caught.value.code == "file_unavailable"
    assert "secret-server-folder" not in caught.value.message
