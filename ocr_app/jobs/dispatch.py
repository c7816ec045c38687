"""Where queued pages go: a Celery broker when ``CELERY_BROKER_URL`` is set, else this process.

With a broker each page is one message (task ``ocr_app.jobs.tasks.recognize_job_page``)
on the queue ``OCR_JOB_QUEUE``; any number of ``celery worker`` processes on any
number of machines take them. Without one, the in-process runner
(``ocr_app.jobs.runner``) reads queued pages from the database itself, so
this only wakes it.
"""

from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger("ocr_app.jobs")


def uses_broker() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def enqueue_pages(page_ids: list[int]) -> None:
    if not page_ids:
        return
    if uses_broker():
        try:
            send_to_broker(page_ids)
        except Exception:  # the job is stored; its pages wait in the database for requeue_job_pages
            log.exception("could not send %d page(s) to the broker; they stay queued: run "
                          "`manage.py requeue_job_pages` once the broker answers", len(page_ids))
    else:
        from . import runner

        runner.wake()


def send_to_broker(page_ids: list[int]) -> None:
    """One message per page (``ocr_app.broker``)."""
    from ..broker import send
    from .tasks import recognize_job_page

    send(recognize_job_page, [(page_id,) for page_id in page_ids], settings.OCR_JOB_QUEUE)
