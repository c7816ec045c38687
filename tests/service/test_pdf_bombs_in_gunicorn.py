"""PDF bombs sent to what `make serve` runs (gunicorn, threaded workers): the worker's memory stays bounded.

pdfium renders in a child forked from a forkserver (``recognition.pdf_sandbox``); here that is checked in the
real server, several requests at once on one worker's threads, a good page answered beside the bombs.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import urllib.parse
import uuid

from recognition.pdf_sandbox import MEMORY_ENV
from tests.service import job_pages
from tests.service.hostile_files import lzw_bomb_pdf, nested_flate_bomb_pdf
from tests.service.server_process import ServerProcess


def _post_page(base_url: str, token: str, name: str, data: bytes) -> tuple[int, dict]:
    parsed = urllib.parse.urlparse(base_url)
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: application/pdf\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    connection.request("POST", "/api/v1/pages/", body, {"Authorization": f"Token {token}",
                                                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _worker_pid(master: int) -> int:
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    workers = [int(pid) for pid in children
               if "gunicorn" in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")]
    assert len(workers) == 1, children
    return workers[0]


def _peak_rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))


def test_bombs_fail_in_their_children_while_a_threaded_worker_answers_and_stays_small(tmp_path, model_file):
    """Four 256 MiB content bombs at once (each grew an in-process caller by ~520 MB) and a good page."""
    server = ServerProcess(tmp_path / "var", model_file, workers=1, threads=4)
    server.env[MEMORY_ENV] = "128"
    token = server.prepare()
    good = job_pages.pdf([job_pages.small_page(0, lines=2)])
    bombs = [nested_flate_bomb_pdf(256 * 2**20), lzw_bomb_pdf(256 * 2**20)] * 2
    server.start()
    try:
        assert _post_page(server.url, token, "good.pdf", good)[0] == 201   # warm: model, forkserver
        worker = _worker_pid(server.process.pid)
        before = _peak_rss_mb(worker)
        answers: list[tuple[int, dict]] = []

        def send(name: str, data: bytes) -> None:
            answers.append(_post_page(server.url, token, name, data))

        threads = [threading.Thread(target=send, args=(f"bomb{i}.pdf", bomb)) for i, bomb in enumerate(bombs)]
        threads.append(threading.Thread(target=send, args=("good.pdf", good)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201, 413, 413, 413, 413], answers
        assert all(body["error"]["code"] == "image_too_large" for status, body in answers if status == 413)
        assert _worker_pid(server.process.pid) == worker, "the worker was replaced"
        grown = _peak_rss_mb(worker) - before
        assert grown < 64, f"the worker's peak RSS grew by {grown} MB"
    finally:
        server.kill()
