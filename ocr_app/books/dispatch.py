"""Where a queued adaptation goes: the Celery ``training`` queue with a broker, else this process's runner."""

from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger("ocr_app.books")


def enqueue(adaptation_id: int) -> None:
    from ..jobs.dispatch import uses_broker

    if uses_broker():
        from ..broker import send
        from .tasks import adapt_book

        try:
            send(adapt_book, [(adaptation_id,)], settings.OCR_TRAINING_QUEUE)
        except Exception:  # stored as queued: the in-process runner or a later request can still take it
            log.exception("could not send adaptation %s to the broker", adaptation_id)
    else:
        from . import runner

        runner.wake()
