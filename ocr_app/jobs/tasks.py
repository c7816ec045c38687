"""The Celery task: one page of one job.

``acks_late``: the message is acknowledged only after the page is stored, so
a worker killed mid-page (SIGKILL, OOM, a lost machine) leaves it on the
broker to be delivered again (at once when a pool process dies or the
connection drops, as with RabbitMQ; after the visibility timeout on Redis).
``process_page`` is idempotent, so a second delivery never stores a page twice.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

log = logging.getLogger("ocr_app.jobs")


@shared_task(bind=True, name="ocr_app.jobs.tasks.recognize_job_page", acks_late=True,
             reject_on_worker_lost=True, max_retries=3, ignore_result=True)
def recognize_job_page(self, page_id: int) -> str:
    from .services import fail_page, process_page

    try:
        return process_page(page_id)
    except Exception as exc:  # a bug or a lost database: retry, then fail this page only
        if self.request.retries >= self.max_retries:
            log.exception("page %s failed after %d attempts", page_id, self.request.retries + 1)
            return fail_page(page_id, "internal_error", f"{type(exc).__name__}: {exc}")
        raise self.retry(exc=exc, countdown=settings.OCR_JOB_RETRY_SECONDS) from exc
