"""Issue 11, items 2 and 3: one result per image, model and user under concurrency; no orphan files."""

import hashlib
import http.client
import threading
import urllib.parse
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token

from ocr_app.models import Recognition, StoredImage, image_path
from tests.rendering import png_bytes, render_line
from tests.service.conftest import media_files

URL = "/api/v1/recognitions/"


def post_image(base_url: str, token: str, data: bytes) -> tuple[int, dict]:
    import json

    parsed = urllib.parse.urlparse(base_url)
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="l.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.request("POST", URL, body, {"Authorization": f"Token {token}",
                                           "Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.fixture
def model_runs(monkeypatch):
    """How many lines the real model ran on (the real method runs; it is only counted)."""
    from recognition import Recognizer

    lines: list[int] = []
    real = Recognizer.recognize

    def counted(self, arrays):
        lines.append(len(arrays))
        return real(self, arrays)

    monkeypatch.setattr(Recognizer, "recognize", counted)
    return lines


@pytest.mark.django_db(transaction=True)
def test_sixteen_simultaneous_posts_of_one_image_store_one_and_run_once(live_server, user, model_runs):
    token = Token.objects.get_or_create(user=user)[0].key
    image = png_bytes(render_line("ثم دخلت سنة خمس وأربعين"))
    post_image(live_server.url, token, png_bytes(render_line("قال")))  # load the model first
    model_runs.clear()
    start = threading.Barrier(16)
    answers, errors = [], []

    def send():
        start.wait()
        try:
            answers.append(post_image(live_server.url, token, image))
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(status for status, _ in answers) == [200] * 15 + [201], answers
    assert len({body["id"] for _, body in answers}) == 1
    sha = hashlib.sha256(image).hexdigest()
    assert Recognition.objects.filter(image__sha256=sha).count() == 1
    assert model_runs == [1]


@pytest.mark.django_db
def test_the_database_refuses_a_second_result_for_the_same_image_model_and_user(api, line_png):
    from django.db import IntegrityError, transaction

    api.post(URL, {"image": _file(line_png)}, format="multipart")
    first = Recognition.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Recognition.objects.create(image=first.image, model_version=first.model_version, user=first.user,
                                   text="x", confidence=0.5, duration_ms=1.0)


def _file(data: bytes, name="l.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


@pytest.mark.django_db
def test_a_file_left_by_a_killed_worker_is_adopted_at_exactly_its_hash(api, settings, line_png):
    sha = hashlib.sha256(line_png).hexdigest()
    left_behind = Path(settings.MEDIA_ROOT) / image_path(sha, ".png")
    left_behind.parent.mkdir(parents=True)
    left_behind.write_bytes(line_png)  # written, then the worker died before its commit
    response = api.post(URL, {"image": _file(line_png)}, format="multipart")
    assert response.status_code == 201, response.content
    stored = StoredImage.objects.get(sha256=sha)
    assert stored.file.name == image_path(sha, ".png")
    assert media_files(settings) == [left_behind] and left_behind.read_bytes() == line_png


@pytest.mark.django_db
def test_check_storage_reports_and_removes_orphans(api, settings, line_png):
    api.post(URL, {"image": _file(line_png)}, format="multipart")
    orphan_png = png_bytes(render_line("سنة"))
    orphan = Path(settings.MEDIA_ROOT) / image_path(hashlib.sha256(orphan_png).hexdigest(), ".png")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_png)
    partial = orphan.parent / ".partial-abc123"
    partial.write_bytes(b"half a file")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("check_storage", "--min-age", "0", stdout=out)
    assert "2 orphan files" in out.getvalue() and orphan.name in out.getvalue()
    call_command("check_storage", "--min-age", "0", "--fix", stdout=StringIO())
    assert not orphan.exists() and not partial.exists()
    assert len(media_files(settings)) == 1  # the referenced file stays
    call_command("check_storage", "--min-age", "0", stdout=StringIO())  # clean now: no error
    young = StringIO()
    orphan.write_bytes(orphan_png)
    call_command("check_storage", "--fix", stdout=young)  # a second-old file may be an upload committing
    assert orphan.exists() and "1 recent files not judged" in young.getvalue()


@pytest.mark.slow
def test_a_server_killed_mid_upload_leaves_nothing_that_a_restart_cannot_mend(tmp_path, model_file):
    """SIGKILL a real server while uploads run; afterwards every row has its file, and re-sending
    the same contents leaves exactly one file per row, each named by its hash."""
    import time

    from tests.service.server_process import ServerProcess

    server = ServerProcess(tmp_path / "var", model_file)
    token = server.prepare()
    images = [png_bytes(render_line(f"قال أبو محمد {i}")) for i in range(40)]
    server.start()
    answered = []

    def send(offset):
        for data in images[offset::8]:
            try:
                answered.append(post_image(server.url, token, data)[0])
            except (OSError, http.client.HTTPException, ValueError):
                return  # the server died under us

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()
    for t in threads:
        t.join(timeout=30)
    assert 8 <= len(answered) < len(images), "the kill did not land in the middle of the uploads"

    after_kill = server.manage("check_storage", "--min-age", "0", check=False).stdout
    assert "0 rows without a file" in after_kill, after_kill

    server.start()
    try:
        statuses = [post_image(server.url, token, data)[0] for data in images]
    finally:
        server.kill()
    assert set(statuses) <= {200, 201}
    report = server.manage("check_storage", "--min-age", "0", check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    media = tmp_path / "var" / "media" / "lines"
    names = sorted(p.name for p in media.rglob("*") if p.is_file())
    assert names == sorted(f"{hashlib.sha256(d).hexdigest()}.png" for d in images)


def test_a_page_request_whose_worker_is_killed_leaves_no_record_after_a_restart(tmp_path, model_file):
    """POST /api/v1/pages/ commits its page and page file before it reads the page; a server killed while it
    reads (SIGKILL, out of memory, gunicorn's timeout on a big page) leaves them open under a dead process.
    The restart forgets them: no row, no page file, no stored page file; check_storage finds nothing."""
    import sqlite3
    import time

    from tests.service import job_pages
    from tests.service.server_process import ServerProcess

    server = ServerProcess(tmp_path / "var", model_file, workers=1, threads=1)
    token = server.prepare()
    data = job_pages.png(job_pages.small_page(5, lines=12, width=2400, height=3400))
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    database = tmp_path / "var" / "db.sqlite3"
    server.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        connection.request("POST", "/api/v1/pages/", body, {"Authorization": f"Token {token}",
                                                           "Content-Type": f"multipart/form-data; boundary={boundary}"})
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline and not rows:
            with sqlite3.connect(database) as db:
                rows = db.execute("SELECT status FROM ocr_app_page WHERE status IN ('queued', 'running')").fetchall()
            time.sleep(0.01)
        assert rows, "the page was never seen being read"
    finally:
        server.kill()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM ocr_app_pagefile").fetchone()[0] == 1   # killed mid-read indeed
    server.start()   # a restart: start-up runs its clean-ups
    server.kill()
    with sqlite3.connect(database) as db:
        left = db.execute("SELECT id, status FROM ocr_app_page").fetchall()
        files = db.execute("SELECT COUNT(*) FROM ocr_app_pagefile").fetchone()[0]
    assert left == [] and files == 0, (left, files)
    assert not [p for p in (tmp_path / "var" / "media" / "pages").rglob("*") if p.is_file()]
    report = server.manage("check_storage", "--min-age", "0", check=False)
    assert report.returncode == 0 and "0 orphan files" in report.stdout, report.stdout + report.stderr
