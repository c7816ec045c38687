"""The Celery task on the ``training`` queue (``make worker-train``): one book adaptation.

``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-training leaves the message to be
delivered again, and the adaptation's lease lets the new delivery take over once the old worker's
heartbeat stops. A delivery while a live worker holds it is retried later, never run twice.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

log = logging.getLogger("ocr_app.books")


@shared_task(bind=True, name="ocr_app.books.tasks.adapt_book", acks_late=True, reject_on_worker_lost=True,
             max_retries=None, ignore_result=True)
def adapt_book(self, adaptation_id: int) -> str:
    from .services import run_adaptation

    outcome = run_adaptation(adaptation_id)
    if outcome == "busy":   # another worker holds it: look again after its lease would have lapsed
        raise self.retry(countdown=settings.OCR_ADAPT_LEASE_SECONDS)
    return outcome
