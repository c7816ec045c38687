"""The client script against a live server (a real HTTP server in a thread), and against small servers
that answer as a broken network or proxy would."""

import http.server
import io
import json
import os
import stat
import threading
import zipfile
from contextlib import contextmanager

import pytest
from rest_framework.authtoken.models import Token

from client import ocr_client
from tests.conftest import write_line_folder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(user):
    return Token.objects.get_or_create(user=user)[0].key


@pytest.fixture
def folder(tmp_path):
    write_line_folder(tmp_path / "scans" / "book", ["قال أبو محمد", "سنة 45", "ثم دخلت سنة"], "Amiri-Regular")
    (tmp_path / "scans" / "broken.png").write_bytes(b"not an image")
    return tmp_path / "scans"


@pytest.mark.parametrize("batch", [0, 2])
def test_client_recognises_a_folder(live_server, token, folder, capsys, batch):
    code = ocr_client.main([str(folder), "--url", live_server.url, "--token", token, "--no-progress",
                            "--batch", str(batch), "--concurrency", "2"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1  # one file failed
    assert len(records) == 4
    good = [r for r in records if "text" in r]
    bad = [r for r in records if "error" in r]
    assert len(good) == 3 and all(isinstance(r["id"], int) for r in good)
    assert len(bad) == 1 and bad[0]["file"].endswith("broken.png")
    assert "broken.png" in captured.err


def test_client_tsv_and_library_use(live_server, token, folder, capsys):
    files = sorted((folder / "book").glob("*.png"))
    assert ocr_client.main([str(f) for f in files] + ["--url", live_server.url, "--token", token,
                                                     "--format", "tsv", "--no-progress"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(len(r) == 4 for r in rows)
    client = ocr_client.OcrClient(live_server.url, token)
    result = client.recognize(files[0])
    assert result["cached"] is True  # the same image was recognised just before


def test_client_reports_bad_token(live_server, folder, capsys):
    code = ocr_client.main([str(folder / "book"), "--url", live_server.url, "--token", "0" * 40,
                            "--no-progress", "--retries", "0"])
    assert code == 1
    assert "Invalid token" in capsys.readouterr().err


def test_client_retries_on_429(monkeypatch, live_server, token, folder):
    from rest_framework.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/s"})
    client = ocr_client.OcrClient(live_server.url, token, retries=6, backoff=0.3)
    files = sorted((folder / "book").glob("*.png"))
    results = [client.recognize(f) for f in files * 2]  # 6 requests at 2/s: some get 429 first
    assert len(results) == 6 and all("text" in r for r in results)


def test_client_chooses_a_model(live_server, token, folder):
    client = ocr_client.OcrClient(live_server.url, token, retries=0)
    files = sorted((folder / "book").glob("*.png"))
    version = client.recognize(files[0])["model"]["version"]
    assert client.recognize(files[1], model=version)["model"]["version"] == version
    assert all("result" in r for r in client.recognize_batch(files, model=version))
    with pytest.raises(ocr_client.OcrError) as info:
        client.recognize(files[2], model="no-such-model")
    assert info.value.status == 400 and info.value.code == "unknown_model"


@pytest.mark.parametrize("batch", [0, 3])
def test_client_prints_a_folder_in_input_order_and_takes_the_url_from_ocr_url(
        live_server, token, tmp_path, capsys, monkeypatch, batch):
    texts = [f"قال أبو محمد {i}" if i % 2 else f"سنة {i}" for i in range(12)]
    files = write_line_folder(tmp_path / "many", texts, "Amiri-Regular")
    monkeypatch.setenv("OCR_URL", live_server.url)
    code = ocr_client.main([str(tmp_path / "many"), "--token", token, "--no-progress", "--concurrency", "6",
                            "--batch", str(batch)])
    assert code == 0
    printed = [json.loads(line)["file"] for line in capsys.readouterr().out.splitlines()]
    assert printed == [str(f) for f in files]


def test_client_default_url_is_the_port_make_serve_listens_on():
    import re
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    port = re.search(r"^PORT \?= (\d+)", makefile, re.M).group(1)
    assert ocr_client.DEFAULT_URL == f"http://127.0.0.1:{port}"


# -- names that are not UTF-8, answers cut short or not JSON, results.zip (audit 2) ------------------------------

@pytest.mark.parametrize("batch", [0, 2])
def test_client_sends_a_file_name_that_is_not_utf8_and_keeps_every_answer(live_server, token, tmp_path, capsys,
                                                                          batch):
    """The part header's filename was str.encode()d: a name that is not UTF-8 raised UnicodeEncodeError, a
    traceback that lost the other files' answers. It is sent, and printed, with U+FFFD for the bad bytes."""
    files = write_line_folder(tmp_path / "in", ["قال أبو محمد", "سنة 45"], "Amiri-Regular")
    os.rename(files[0], tmp_path / "in" / os.fsdecode(b"a\xff.png"))
    code = ocr_client.main([str(tmp_path / "in"), "--url", live_server.url, "--token", token, "--no-progress",
                            "--batch", str(batch), "--retries", "0"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, records
    assert [os.path.basename(r["file"]) for r in records] == ["000001.png", "a\ufffd.png"]
    assert records[1]["text"].startswith("قال")


def _handler(answer, requests: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            answer(self)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

        def log_message(self, *args):
            pass
    return Handler


@contextmanager
def serving(answer):
    """A server that answers every request with ``answer(handler)``; yields (url, the paths requested)."""
    requests: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(answer, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def _cut_short(handler):
    """200 with a Content-Length it does not deliver: the connection drops mid-answer (IncompleteRead)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b'{"id": 1, "te')
    handler.close_connection = True


def _not_json(handler):
    """200 with a page that is not JSON (a captive portal, a proxy's page)."""
    body = b"<html><body>Welcome</body></html>"
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize("answer, says", [(_cut_short, "cut short"), (_not_json, "not what was expected")])
def test_client_retries_an_answer_cut_short_or_not_json_then_reports_it_per_file(tmp_path, capsys, answer, says):
    files = write_line_folder(tmp_path / "in", ["قال أبو محمد", "سنة 45"], "Amiri-Regular")
    with serving(answer) as (url, requests):
        code = ocr_client.main([*map(str, files), "--url", url, "--token", "t", "--no-progress", "--retries", "1",
                                "--concurrency", "1"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1
    assert len(records) == 2 and all(says in r["error"] for r in records), records
    assert len(requests) == 4   # each file: the request and its retry


def test_download_results_reports_a_corrupt_zip_and_writes_whole_files(tmp_path):
    def corrupt(handler):
        body = b"PK\x03\x04 this is not the rest of a zip"
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with serving(corrupt) as (url, _):
        with pytest.raises(ocr_client.OcrError, match="not a readable zip"):
            ocr_client.OcrClient(url, "t", retries=0).download_results(7, tmp_path / "bad")
    assert list((tmp_path / "bad").iterdir()) == []

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("pages/book-0001.txt", "قال أبو محمد\n")
        archive.writestr("recognitions.csv", "id,text\n")

    def good(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(packed.getvalue())))
        handler.end_headers()
        handler.wfile.write(packed.getvalue())

    old = os.umask(0o027)
    try:
        with serving(good) as (url, _):
            written = ocr_client.OcrClient(url, "t", retries=0).download_results(7, tmp_path / "good")
    finally:
        os.umask(old)
    assert sorted(p.relative_to((tmp_path / "good").resolve()).as_posix() for p in written) == [
        "pages/book-0001.txt", "recognitions.csv"]
    assert (tmp_path / "good" / "pages" / "book-0001.txt").read_text(encoding="utf-8") == "قال أبو محمد\n"
    every = [p for p in (tmp_path / "good").rglob("*") if p.is_file()]
    assert len(every) == 2   # no temporary file stays
    assert {stat.S_IMODE(p.stat().st_mode) for p in every} == {0o640}
