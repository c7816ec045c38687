"""The embedded adaptation runner: without a broker, a thread of the web process runs queued adaptations.

The thread only waits and reads the database; training runs in a ``python -m training.adapt``
subprocess (``ocr_app.books.services``), so TensorFlow never enters the web process.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from .models import BookAdaptation

log = logging.getLogger("ocr_app.books")

_wake = threading.Event()
_stop = threading.Event()
_thread: list[threading.Thread] = []


def wake() -> None:
    _wake.set()


def next_adaptation() -> int | None:
    """A queued adaptation, or one whose worker stopped renewing its lease."""
    now = timezone.now()
    return (BookAdaptation.objects.filter(Q(status=BookAdaptation.Status.QUEUED)
                                          | Q(status=BookAdaptation.Status.RUNNING, claimed_until__lt=now))
            .order_by("created_at", "id").values_list("pk", flat=True).first())


def run_pending(stop: threading.Event | None = None) -> int:
    """Run adaptations until none is waiting; returns how many ran."""
    from .services import run_adaptation

    count = 0
    while stop is None or not stop.is_set():
        adaptation_id = next_adaptation()
        if adaptation_id is None:
            return count
        try:
            if run_adaptation(adaptation_id) == "busy":   # another process took it a moment ago
                return count
        except Exception:  # a bug must not kill the runner (run_adaptation has marked it failed)
            log.exception("adaptation %s failed in the in-process runner", adaptation_id)
        count += 1
    return count


def _loop() -> None:
    try:
        while not _stop.is_set():
            run_pending(_stop)
            connections.close_all()
            _wake.wait(settings.OCR_JOB_POLL_SECONDS * 5)
            _wake.clear()
    finally:
        connections.close_all()


def start() -> None:
    if any(t.is_alive() for t in _thread):
        return
    _stop.clear()
    _thread[:] = [threading.Thread(target=_loop, name="ocr-adaptation-runner", daemon=True)]
    _thread[0].start()


def stop(timeout: float = 30.0) -> None:
    _stop.set()
    _wake.set()
    for thread in _thread:
        thread.join(timeout)
    _thread.clear()
