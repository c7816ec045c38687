"""Jobs on a real broker, run by real ``celery worker`` processes started here.

Redis (127.0.0.1:6379, database 13) is the broker; RabbitMQ (127.0.0.1:5672)
once, if it answers. Each test uses its own queue name, so nothing else on
the broker is touched. The workers read the test database and media folder.
"""

from __future__ import annotations

import time

import pytest

from ocr_app.jobs.models import Page, PageLine
from ocr_app.models import Recognition
from tests.service import job_pages
from tests.service.celery_workers import RABBITMQ_URL, answers

pytestmark = pytest.mark.django_db(transaction=True)


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


@pytest.mark.skipif(not answers(5672), reason="RabbitMQ does not answer on 127.0.0.1:5672")
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
