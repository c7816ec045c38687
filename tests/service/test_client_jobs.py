"""``ocr_client.py --job`` against a live server whose jobs run in-process (no broker), as ``make serve``."""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token

from client import ocr_client
from ocr_app.jobs import runner
from tests.service import job_pages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(user):
    return Token.objects.get_or_create(user=user)[0].key


@pytest.fixture
def in_process_runner():
    runner.start(threads=1)
    yield
    runner.stop()


@pytest.fixture
def book(tmp_path):
    folder = tmp_path / "book"
    folder.mkdir()
    pages = [job_pages.small_page(seed) for seed in range(3)]
    (folder / "a-cover.png").write_bytes(job_pages.png(pages[0]))
    (folder / "b-chapter.pdf").write_bytes(job_pages.pdf(pages[1:]))
    (folder / "notes.txt").write_text("not sent: not a page file")
    return folder


def test_job_upload_progress_download(live_server, token, book, tmp_path, capsys, in_process_runner):
    out = tmp_path / "results"
    code = ocr_client.main(["--job", str(book), "--out", str(out), "--url", live_server.url, "--token", token,
                            "--poll", "0.2", "--name", "Tarikh"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert (summary["status"], summary["pages_total"], summary["pages_done"]) == ("done", 3, 3)
    assert "3/3 pages" in captured.err   # the progress line, as printed when stderr is not a terminal
    for stem in ("a-cover", "b-chapter-p0001", "b-chapter-p0002"):
        assert (out / "pages" / f"{stem}.alto.xml").exists() and (out / "pages" / f"{stem}.txt").read_text()
    assert (out / "Tarikh.book.txt").read_text().strip()
    assert len((out / "recognitions.csv").read_text(encoding="utf-8-sig").splitlines()) > 3


def test_job_with_a_failed_page_exits_non_zero(live_server, token, tmp_path, capsys, in_process_runner):
    good = tmp_path / "p1.png"
    good.write_bytes(job_pages.png(job_pages.small_page(0)))
    bad = tmp_path / "p2.png"
    bad.write_bytes(good.read_bytes()[:-500])   # truncated: fails when read, not at upload
    code = ocr_client.main(["--job", str(good), str(bad), "--out", str(tmp_path / "out"), "--url", live_server.url,
                            "--token", token, "--poll", "0.2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["pages_failed"] == 1
    assert "p2.png" in captured.err and "corrupt_image" in captured.err
    assert (tmp_path / "out" / "pages" / "p1.txt").exists()


def test_progress_line():
    line = ocr_client.job_progress_line({"status": "running", "pages_total": 50, "pages_done": 12, "pages_failed": 1,
                                         "timings": {"pages_per_minute": 30.0, "eta_s": 74}}, width=10)
    assert line == "[##........] 13/50 pages, 1 failed, 30.0 pages/min, ETA 1m14s"
