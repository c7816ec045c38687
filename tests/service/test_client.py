"""The client script against a live server (a real HTTP server in a thread)."""

import json

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
