"""``ocr_client.py --job`` against a live server whose jobs run in-process (no broker), as ``make serve``."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from rest_framework.authtoken.models import Token

from client import ocr_client
from ocr_app.jobs import runner
from ocr_app.jobs.models import Job
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


@contextmanager
def cutting_the_first_job_answer_short(upstream: str):
    """A proxy in front of the live server that passes every request on, and cuts the answer to the first
    ``POST /api/v1/jobs/`` short once the server has answered it (the job exists): what a dropped connection or
    a proxy's timeout does. Yields (its url, the Idempotency-Key of each job POST it passed on)."""
    target = urlsplit(upstream)
    keys: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _pass_on(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            connection.close()
            job_post = self.command == "POST" and self.path == "/api/v1/jobs/"
            if job_post:
                keys.append(self.headers.get("Idempotency-Key"))
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if job_post and len(keys) == 1:
                self.wfile.write(data[: len(data) // 2])   # the connection drops mid-answer
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_POST = _pass_on

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", keys
    finally:
        server.shutdown()
        server.server_close()


def test_a_job_post_retried_after_its_answer_was_cut_short_makes_one_job(live_server, token, user, book):
    """The client retries a POST whose answer was cut short; the first one had created the job, and the retry
    made a second one (every page read twice). Each submit_job sends one Idempotency-Key on all its tries."""
    files = sorted(p for p in book.iterdir() if p.suffix in (".png", ".pdf"))
    with cutting_the_first_job_answer_short(live_server.url) as (url, keys):
        client = ocr_client.OcrClient(url, token, retries=3, backoff=0.01)
        job = client.submit_job(files, name="Tarikh")
        assert Job.objects.count() == 1 and job["id"] == Job.objects.get().pk
        assert len(keys) == 2 and keys[0] and keys[0] == keys[1]   # the try cut short, and its retry
        assert (job["name"], job["pages_total"]) == ("Tarikh", 3)
        # the next job is a job of its own, under a key of its own
        second = client.submit_job(files[:1])
    assert len(keys) == 3 and keys[2] not in keys[:2]
    assert Job.objects.count() == 2 and second["id"] != job["id"]
