"""The embedded job runner: pages recognised by a thread in the web process, no broker needed.

Used when ``CELERY_BROKER_URL`` is not set (``make serve``). The database is
the queue: the thread claims the oldest queued page with a conditional update
(so several web processes can run it side by side), with a lease, and runs the
same ``process_page`` as a Celery worker. A page whose process died is taken
again when its lease lapses, and a restarted server carries on with the jobs
that were queued.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from ..processes import dead_here
from .models import Job, Page

log = logging.getLogger("ocr_app.jobs")

_wake = threading.Event()
_threads: list[threading.Thread] = []
_stop = threading.Event()


def wake() -> None:
    _wake.set()


def claim_next_page() -> int | None:
    """The id of the next page this process may run (leased to it), or None."""
    now = timezone.now()
    lease = now + datetime.timedelta(seconds=settings.OCR_JOB_LEASE_SECONDS)
    # A cancelled job's queued page too (one put back by a dead process's clean-up as the job was cancelled):
    # process_page cancels it instead of reading it; left alone it would count as open for good.
    open_pages = (Page.objects.filter(Q(job__status__in=Job.UNFINISHED)
                                      | Q(job__status=Job.Status.CANCELLED, status=Page.Status.QUEUED))
                  .filter(Q(status=Page.Status.QUEUED) | Q(status=Page.Status.RUNNING, claimed_until__lt=now)))
    for page_id, claimed_until in open_pages.order_by("job__created_at", "job_id", "index") \
            .values_list("pk", "claimed_until")[:20]:
        if Page.objects.filter(pk=page_id, status__in=Page.OPEN, claimed_until=claimed_until) \
                .update(claimed_until=lease):
            return page_id
    return None


def release_pages_of_dead_processes() -> int:
    """Job pages left running by a process of this machine that no longer exists (a killed server) are free
    now. (A page without a job, whose request died with its process, is forgotten at start-up instead:
    ``ocr_app.pages.services.forget_pages_of_dead_requests``.)"""
    prefix = f"{socket.gethostname()}:"
    dead = []
    for page_id, worker, started_at in Page.objects.filter(status=Page.Status.RUNNING, job__isnull=False,
                                                           processed_by__startswith=prefix) \
            .values_list("pk", "processed_by", "started_at"):
        if dead_here(worker, started_at):
            dead.append(page_id)
    if dead:
        # a cancelled job's page is not run again: queued, it would count as open for good
        Page.objects.filter(pk__in=dead, status=Page.Status.RUNNING, job__status=Job.Status.CANCELLED).update(
            claimed_until=None, status=Page.Status.CANCELLED, finished_at=timezone.now())
        Page.objects.filter(pk__in=dead, status=Page.Status.RUNNING).update(claimed_until=None,
                                                                             status=Page.Status.QUEUED)
        log.info("%d page(s) of a process that died are queued again (or cancelled with their job)", len(dead))
    return len(dead)


def close_jobs_left_open() -> int:
    """Close the unfinished jobs none of whose pages is open: their last page's process died between storing
    the page and closing the job, and no page of theirs will be run again to close it."""
    from .services import finish_job_if_complete

    left = list(Job.objects.filter(status__in=Job.UNFINISHED).exclude(pages__status__in=Page.OPEN)
                .filter(pages__isnull=False).values_list("pk", flat=True).distinct())
    for job_id in left:
        finish_job_if_complete(job_id)
    if left:
        log.info("%d job(s) whose pages were all finished are closed", len(left))
    return len(left)


def run_pending(stop_when_idle: bool = True, between_pages=lambda: None,
                stop: threading.Event | None = None) -> int:
    """Process claimed pages until none is left (or until stopped); returns how many were run."""
    from .services import fail_page, process_page

    count = 0
    while stop is None or not stop.is_set():
        page_id = claim_next_page()
        if page_id is None:
            if stop_when_idle:
                return count
            between_pages()
            _wake.wait(settings.OCR_JOB_POLL_SECONDS)
            _wake.clear()
            continue
        try:
            process_page(page_id)
        except Exception as exc:  # a bug must fail the page, not kill the runner
            log.exception("page %s failed in the in-process runner", page_id)
            fail_page(page_id, "internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            between_pages()
        count += 1
    return count


def _loop() -> None:
    try:
        release_pages_of_dead_processes()
        close_jobs_left_open()
        # Idle, the thread holds no database connection: a web process's connections stay at its
        # request threads' (what gunicorn.conf.py promises), plus one for a moment every poll.
        run_pending(stop_when_idle=False, between_pages=connections.close_all, stop=_stop)
    finally:
        connections.close_all()   # this thread's own connections


def start(threads: int | None = None) -> None:
    """Start the runner threads once per process (idempotent)."""
    if any(t.is_alive() for t in _threads):
        return
    _stop.clear()
    _threads.clear()
    for n in range(threads or settings.OCR_JOB_THREADS):
        thread = threading.Thread(target=_loop, name=f"ocr-job-runner-{n}", daemon=True)
        thread.start()
        _threads.append(thread)
    log.info("in-process job runner started (%d thread(s)); set CELERY_BROKER_URL to use Celery workers",
             len(_threads))


def stop(timeout: float = 30.0) -> None:
    """Stop after the page being read (tests; a clean shutdown)."""
    _stop.set()
    _wake.set()
    for thread in _threads:
        thread.join(timeout)
    _threads.clear()
