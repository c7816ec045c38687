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
    """One message per page, over one connection; the queue is declared first so none is dropped."""
    from ocr_project.celery import app

    from .tasks import recognize_job_page

    queue = app.amqp.queues.select_add(settings.OCR_JOB_QUEUE) or app.amqp.queues[settings.OCR_JOB_QUEUE]
    with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        connection.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5)
        queue.bind(connection.default_channel).declare()
        for page_id in page_ids:
            recognize_job_page.apply_async((page_id,), connection=connection, queue=queue)
