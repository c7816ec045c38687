"""arabic-ocr pages: rendered pages as PNG, multi-page TIFF and PDF, with a bad file among them."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from recognition import page_cli
from recognition.metrics import edit_distance
from recognition.text import normalize_text
from tests.conftest import CORPUS_LINES
from tests.page_rendering import PageSpec, RenderedPage, render_page
from tests.test_cli import ROOT, SHIPPED_INT8, arabic_ocr

WORDS = " ".join(CORPUS_LINES).split()


def small_page(seed: int) -> RenderedPage:
    """Three justified lines, no header or footnotes: a page read in a fraction of a second."""
    spec = PageSpec(width=900, height=420, body_lines=3, header=False, heading=False, margin_numbers=False,
                    footnotes=0, seed=seed)
    return render_page(spec, WORDS[seed * 17:] + WORDS)


def save(pages: list[RenderedPage], path: Path, **options) -> Path:
    frames = [Image.fromarray(page.image) for page in pages]
    frames[0].save(path, save_all=len(frames) > 1, append_images=frames[1:], **options)
    return path


def page_cer(page: RenderedPage, text: str) -> float:
    truth = "\n".join(normalize_text(line.text) for line in page.lines)
    return edit_distance(truth, text.strip()) / len(truth)


@pytest.fixture(scope="module")
def pages() -> list[RenderedPage]:
    return [small_page(seed) for seed in range(4)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, pages) -> Path:
    """A folder of page files: a PNG, a 2-page TIFF, a 2-page PDF (Pillow's PDF writer, 300 dpi) and a
    truncated PNG."""
    folder = tmp_path_factory.mktemp("scans")
    save(pages[:1], folder / "cover.png")
    save(pages[1:3], folder / "scan.tif", compression="tiff_lzw")
    save(pages[2:4], folder / "book.pdf", resolution=300.0)
    good = io.BytesIO()
    Image.fromarray(pages[3].image).save(good, format="PNG")
    (folder / "torn.png").write_bytes(good.getvalue()[:-600])
    return folder


def test_every_page_is_written_in_every_format_and_a_bad_file_fails_only_itself(inputs, pages, tmp_path):
    out = tmp_path / "out"
    result = arabic_ocr("pages", str(inputs), "--format", "txt,json,alto", "--out", str(out), "--jobs", "2",
                        "--model", str(SHIPPED_INT8))
    assert result.returncode == 1, result.stderr
    stems = ["book-0001", "book-0002", "cover", "scan-0001", "scan-0002"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}{x}" for s in stems
                                                           for x in (".txt", ".json", ".alto.xml"))
    assert "5 page(s) written" in result.stderr and "1 failed" in result.stderr
    assert f"{inputs / 'torn.png'} page 1: corrupt_image" in result.stderr
    assert "%|" not in result.stderr   # no progress bar when stderr is not a terminal

    # the PDF's pages (Pillow writes them JPEG-compressed; rendered back at 300 dpi) read as well as images
    truth = {"cover": pages[0], "scan-0001": pages[1], "scan-0002": pages[2], "book-0001": pages[2],
             "book-0002": pages[3]}
    for stem, page in truth.items():
        text = (out / f"{stem}.txt").read_text(encoding="utf-8")
        assert page_cer(page, text) < 0.15, (stem, text)
        document = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        lines = [line for region in document["regions"] for line in region["lines"]]
        assert len(lines) == len(page.lines) and document["text"] == text
        alto = ET.parse(out / f"{stem}.alto.xml").getroot()
        assert len([e for e in alto.iter() if e.tag.endswith("TextLine")]) == len(lines)


def test_one_job_writes_what_several_write(inputs, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    files = [str(inputs / "scan.tif"), str(inputs / "cover.png")]
    for out, jobs in ((one, "1"), (two, "3")):
        result = arabic_ocr("pages", *files, "--format", "hocr", "--out", str(out), "--jobs", jobs)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in one.iterdir()) == ["cover.hocr", "scan-0001.hocr", "scan-0002.hocr"]
    for path in one.iterdir():
        assert path.read_bytes() == (two / path.name).read_bytes()


def test_a_terminal_gets_a_progress_bar(inputs, tmp_path):
    """stderr on a pseudo-terminal, as when a person runs the command."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a 100-column terminal
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen([sys.executable, "-m", "recognition.cli", "pages", str(inputs / "cover.png"),
                                "--out", str(tmp_path), "--model", str(SHIPPED_INT8)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:   # the terminal closed: the command has ended
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0
    os.close(controller)
    assert b"100%" in shown and b"1/1" in shown and b"page" in shown
    assert (tmp_path / "cover.txt").exists()


def test_usage_errors_exit_2_before_anything_is_written(inputs, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "other").mkdir()
    save([small_page(0)], tmp_path / "other" / "cover.jpg")
    clash = arabic_ocr("pages", str(inputs / "cover.png"), str(tmp_path / "other"), "--out", str(out))
    assert clash.returncode == 2 and "would both be written as cover" in clash.stderr
    unknown = arabic_ocr("pages", str(inputs / "cover.png"), "--format", "pdf", "--out", str(out))
    assert unknown.returncode == 2 and "choose from txt, json, alto, page, hocr" in unknown.stderr
    missing = arabic_ocr("pages", str(tmp_path / "nowhere.pdf"), "--out", str(out))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    assert not out.exists()


def test_help_explains_names_formats_jobs_and_exit_status():
    help_text = arabic_ocr("pages", "--help").stdout
    for words in ("NAME-0001", "300 dpi", "--jobs", "--format", "alto.xml", "page.xml", "hocr", "progress bar",
                  "Exits with 1 if any page failed"):
        assert words in help_text, words


# -- names, modes and what a failure leaves (audit 2) ------------------------------------------------------------

def test_pages_named_with_a_control_character_or_bytes_that_are_not_utf8_are_read_and_written(pages, tmp_path):
    """A Linux file name may hold C0 controls and bytes that are not UTF-8: the outputs are named with the
    input's bytes, and the name written inside them is valid, XML-safe Unicode (U+FFFD for what is not)."""
    folder = tmp_path / "in"
    folder.mkdir()
    save(pages[:1], folder / "scan\x01one.png")
    save(pages[1:2], folder / os.fsdecode(b"x\xffy.png"))
    out = tmp_path / "out"
    result = arabic_ocr("pages", str(folder), "--format", "txt,alto,page,hocr", "--out", str(out),
                        "--threads", "1", "--model", str(SHIPPED_INT8))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.fsencode(p.name) for p in out.iterdir()) == sorted(
        stem + suffix for stem in (b"scan\x01one", b"x\xffy") for suffix in (b".txt", b".alto.xml", b".page.xml",
                                                                         b".hocr"))
    for written in out.iterdir():
        if not written.name.endswith(".txt"):
            etree.fromstring(written.read_bytes())   # well-formed
    alto = etree.fromstring((out / os.fsdecode(b"x\xffy.alto.xml")).read_bytes())
    assert alto.find(".//{*}fileName").text == "x\ufffdy.png"
    assert (out / os.fsdecode(b"x\xffy.txt")).read_text(encoding="utf-8").strip()


def test_outputs_get_the_mode_the_umask_allows_and_no_temporary_file_stays(inputs, tmp_path):
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        result = arabic_ocr("pages", str(inputs / "cover.png"), "--format", "txt,json", "--out", str(out),
                            "--model", str(SHIPPED_INT8))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cover.json", "cover.txt"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}


def test_a_page_whose_outputs_cannot_all_be_written_leaves_none_of_them(inputs, tmp_path):
    """The page's .alto.xml cannot be put in place (a folder has its name): its .txt, written first, is taken
    back, and no temporary file stays; the page is listed as failed."""
    out = tmp_path / "out"
    (out / "cover.alto.xml").mkdir(parents=True)
    result = arabic_ocr("pages", str(inputs / "cover.png"), "--format", "txt,alto", "--out", str(out),
                        "--model", str(SHIPPED_INT8))
    assert result.returncode == 1 and "cover.png page 1" in result.stderr, result.stderr
    assert [p.name for p in out.iterdir()] == ["cover.alto.xml"] and (out / "cover.alto.xml").is_dir()


def test_a_numbered_page_that_clashes_with_a_page_of_a_multipage_file_is_refused(inputs, tmp_path):
    """scan.tif (2 pages: scan-0001.*, scan-0002.*) and scan-0001.png would write the same files."""
    save([small_page(5)], tmp_path / "scan-0001.png")
    out = tmp_path / "out"
    result = arabic_ocr("pages", str(inputs / "scan.tif"), str(tmp_path / "scan-0001.png"), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert (f"{inputs / 'scan.tif'} page 1 and {tmp_path / 'scan-0001.png'} would both be written as "
            "scan-0001.*") in result.stderr
    assert not out.exists()


def test_out_naming_a_file_is_bad_usage(inputs, tmp_path):
    (tmp_path / "results").write_text("not a folder")
    result = arabic_ocr("pages", str(inputs / "cover.png"), "--out", str(tmp_path / "results"))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_gone_since_it_was_listed_fails_only_itself(inputs, tmp_path):
    tasks, failures = page_cli.plan([tmp_path / "gone.png", inputs / "cover.png"])
    assert [t.stem for t in tasks] == ["cover"]
    assert [(f.path, f.code) for f in failures] == [(str(tmp_path / "gone.png"), "unreadable_file")]


def interrupted_run(book: Path, out: Path, jobs: str, formats: str, again: bool) -> str:
    """Run ``pages`` on ``book`` in a session of its own; once its first page is written, Ctrl-C it as a terminal
    does (SIGINT to the whole process group: the workers too), and with ``again`` keep pressing it every 20 ms
    until the command has ended, so that further presses land in every part of its finishing (the pages being
    read, the pool's shutdown, the last line, the interpreter's exit). Returns what it wrote on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen([sys.executable, "-m", "recognition.cli", "pages", str(book), "--out", str(out),
                                "--format", formats, "--jobs", jobs, "--threads", "1", "--model", str(SHIPPED_INT8)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and any(p.suffix == ".txt" for p in out.iterdir())):
            assert process.poll() is None and time.monotonic() < deadline, "no page was written"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        while again and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            os.killpg(process.pid, signal.SIGINT)   # not yet reaped: the group is there (if only as a zombie)
        # to the end of stderr: every process of the group that holds it (the workers too) has ended
        stderr = process.communicate(timeout=60)[1].decode()
    finally:
        # After a failure, whatever is left of the group. Once stderr is closed by all of them the group is gone
        # and its id may be another's; while one of them lives, the id cannot be given to anyone else.
        if process.stderr is not None and not process.stderr.closed or process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    return stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_ends_with_a_line_and_exit_130(pages, tmp_path, jobs):
    """Ctrl-C reaches the command's whole process group (the workers too): a line on stderr, exit 130, no
    traceback and no temporary file."""
    book = save([pages[i % len(pages)] for i in range(40)], tmp_path / "book.tif")
    out = tmp_path / "out"
    stderr = interrupted_run(book, out, jobs, "txt", again=False)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("arabic-ocr: interrupted;"), stderr
    written = sorted(p.name for p in out.iterdir())
    assert written and len(written) < 40 and all(name.endswith(".txt") for name in written), written


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_pressed_again_while_the_command_finishes_ends_it_as_cleanly(pages, tmp_path, jobs):
    """A person who sees no prompt at once presses Ctrl-C again, and again: still exit 130, one line, no
    traceback (from this process or a worker), and every page written has all its formats, each complete."""
    book = save([pages[i % len(pages)] for i in range(40)], tmp_path / "book.tif")
    out = tmp_path / "out"
    stderr = interrupted_run(book, out, jobs, "txt,json,alto", again=True)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [stderr.strip().splitlines()[-1]], stderr
    assert stderr.strip().startswith("arabic-ocr: interrupted;"), stderr
    written = sorted(p.name for p in out.iterdir())
    stems = {name.split(".")[0] for name in written}
    assert stems and len(stems) < 40, written
    assert written == sorted(f"{stem}{suffix}" for stem in stems for suffix in (".txt", ".json", ".alto.xml"))
    for stem in stems:
        assert (out / f"{stem}.txt").read_text(encoding="utf-8").strip()
        document = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert document["regions"] and document["text"] == (out / f"{stem}.txt").read_text(encoding="utf-8")
        etree.fromstring((out / f"{stem}.alto.xml").read_bytes())   # well-formed
