"""Jobs on a real broker, run by real ``celery worker`` processes started here.

Redis (127.0.0.1:6379, database 13) is the broker; RabbitMQ (127.0.0.1:5672)
once, if it answers. Each test uses its own queue name, so nothing else on
the broker is touched. The workers read the test database and media folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ocr_app.jobs.models import Page, PageLine
from ocr_app.models import Recognition
from tests.service import job_pages

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/13"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
ROOT = Path(__file__).resolve().parents[2]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, name: str, broker: str, queue: str, settings, log: Path):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocr_project.settings", "DATABASE_URL": _database_url(),
               "MEDIA_ROOT": str(settings.MEDIA_ROOT), "OCR_DEFAULT_MODEL": str(settings.OCR_DEFAULT_MODEL),
               "CELERY_BROKER_URL": broker, "OCR_JOB_QUEUE": queue, "OCR_JOB_VISIBILITY_TIMEOUT": "3",
               "OCR_JOB_RESTORE_INTERVAL": "1", "PYTHONPATH": str(ROOT)}
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ocr_project.celery", "worker", "--concurrency", "1",
             "-n", f"{name}@%h", "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log.read_bytes():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes at once: nothing gets to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def broker_queue():
    if not _answers(6379):
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return f"ocr-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_worker(service_settings, broker_queue, tmp_path):
    from ocr_app import registry

    registry.active_version()   # registered at start-up (the `started` fixture), before any worker looks
    workers: list[Worker] = []

    def start(broker: str = REDIS_URL, name: str | None = None) -> Worker:
        service_settings.CELERY_BROKER_URL = broker
        service_settings.OCR_JOB_QUEUE = broker_queue
        worker = Worker(name or f"w{len(workers) + 1}", broker, broker_queue, service_settings,
                        tmp_path / f"worker-{len(workers) + 1}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    if workers:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in [*client.scan_iter(f"*{broker_queue}*"), broker_queue]:
            client.delete(key)


def _wait_for(api, job_id: int, status: str = "done", timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/api/v1/jobs/{job_id}/").json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def _submit(api, name: str, data: bytes) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    answer = api.post("/api/v1/jobs/", {"files": [SimpleUploadedFile(name, data)]}, format="multipart")
    assert answer.status_code == 202, answer.content
    return answer.json()


def _stored_once(job_id: int) -> None:
    """Every page done, its lines stored exactly once."""
    pages = list(Page.objects.filter(job_id=job_id))
    assert all(p.status == Page.Status.DONE for p in pages), [(p.name, p.status, p.error_message) for p in pages]
    for page in pages:
        assert PageLine.objects.filter(page=page).count() == page.line_count > 0
    assert Recognition.objects.filter(page_lines__page__job_id=job_id).count() == \
        Recognition.objects.count() == sum(p.line_count for p in pages)


def test_two_worker_processes_share_one_job_on_redis(api, start_worker):
    workers = [start_worker(), start_worker()]
    for worker in workers:
        worker.wait_ready()
    book = job_pages.tiff([job_pages.small_page(seed) for seed in range(8)])
    job = _submit(api, "book.tif", book)
    body = _wait_for(api, job["id"])
    assert (body["pages_done"], body["pages_failed"]) == (8, 0)
    _stored_once(job["id"])
    by = set(Page.objects.filter(job_id=job["id"]).values_list("processed_by", flat=True))
    assert len(by) == 2, by   # both worker processes took pages of the one job


def test_a_worker_killed_mid_job_loses_no_page_and_duplicates_none(api, start_worker):
    first = start_worker()
    first.wait_ready()
    pages = [job_pages.small_page(seed, lines=6, width=1400, height=900) for seed in range(10)]
    job = _submit(api, "book.pdf", job_pages.pdf(pages))
    deadline = time.monotonic() + 60
    while not (Page.objects.filter(job_id=job["id"], status="done").exists()
               and Page.objects.filter(job_id=job["id"], status="running").exists()):
        assert time.monotonic() < deadline, first.log.read_text()
        time.sleep(0.02)
    first.kill()
    interrupted = set(Page.objects.filter(job_id=job["id"], status="running").values_list("pk", flat=True))
    assert interrupted and Page.objects.filter(job_id=job["id"], status="queued").exists()

    start_worker(name="w2")   # another worker takes the job over
    body = _wait_for(api, job["id"])
    assert (body["pages_done"], body["pages_failed"]) == (10, 0)
    _stored_once(job["id"])
    assert all(a >= 2 for a in Page.objects.filter(pk__in=interrupted).values_list("attempts", flat=True))


def test_cancel_stops_a_running_job_within_a_page(api, start_worker):
    worker = start_worker()
    worker.wait_ready()
    pages = [job_pages.small_page(seed, lines=6, width=1400, height=900) for seed in range(10)]
    job = _submit(api, "book.tif", job_pages.tiff(pages))
    while not Page.objects.filter(job_id=job["id"], status="done").exists():
        time.sleep(0.02)
    assert api.post(f"/api/v1/jobs/{job['id']}/cancel/").json()["status"] == "cancelled"
    time.sleep(3)   # a page that was being read finishes; no other starts
    body = api.get(f"/api/v1/jobs/{job['id']}/").json()
    assert body["status"] == "cancelled" and body["pages_done"] + body["pages_cancelled"] == 10
    assert body["pages_cancelled"] >= 7 and body["pages_running"] == 0


@pytest.mark.skipif(not _answers(5672), reason="RabbitMQ does not answer on 127.0.0.1:5672")
def test_a_job_on_rabbitmq(api, start_worker, broker_queue):
    worker = start_worker(RABBITMQ_URL)
    worker.wait_ready()
    job = _submit(api, "book.tif", job_pages.tiff([job_pages.small_page(seed) for seed in range(2)]))
    assert _wait_for(api, job["id"])["pages_done"] == 2
    _stored_once(job["id"])
    worker.stop()
    from kombu import Connection

    with Connection(RABBITMQ_URL) as connection:   # leave the shared broker as we found it
        connection.default_channel.queue_delete(broker_queue)
        connection.default_channel.exchange_delete(broker_queue)



def test_requeue_command_sends_pages_a_dead_web_process_never_sent(api, start_worker, service_settings):
    """The web process committed the job but died before sending: requeue_job_pages sends them."""
    from django.core.management import call_command

    service_settings.CELERY_BROKER_URL = ""   # as if nothing had been sent at submit time
    job = _submit(api, "book.tif", job_pages.tiff([job_pages.small_page(seed) for seed in range(2)]))
    worker = start_worker()
    worker.wait_ready()
    call_command("requeue_job_pages", "--job", str(job["id"]))
    assert _wait_for(api, job["id"])["pages_done"] == 2
    _stored_once(job["id"])
