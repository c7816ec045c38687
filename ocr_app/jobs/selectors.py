"""Read side of jobs: who sees which, and progress with timings and an ETA."""

from __future__ import annotations

from django.db.models import Avg, Count, QuerySet
from django.utils import timezone

from .models import Job, Page


def jobs_visible_to(user) -> QuerySet[Job]:
    """Jobs belong to their user; staff see all."""
    queryset = Job.objects.select_related("model_version", "user")
    return queryset if user.is_staff else queryset.filter(user=user)


def job_progress(job: Job) -> dict:
    counts = {row["status"]: row["n"] for row in
              Page.objects.filter(job=job).values("status").annotate(n=Count("id")).order_by()}
    done, failed = counts.get(Page.Status.DONE, 0), counts.get(Page.Status.FAILED, 0)
    cancelled = counts.get(Page.Status.CANCELLED, 0)
    remaining = counts.get(Page.Status.QUEUED, 0) + counts.get(Page.Status.RUNNING, 0)
    end = job.finished_at or timezone.now()
    elapsed = (end - job.started_at).total_seconds() if job.started_at else None
    finished = done + failed
    rate = finished / elapsed if elapsed and finished else None   # pages per second, all workers together
    average_ms = Page.objects.filter(job=job, status=Page.Status.DONE).aggregate(ms=Avg("duration_ms"))["ms"]
    return {
        "pages_total": job.pages_total,
        "pages_done": done,
        "pages_failed": failed,
        "pages_cancelled": cancelled,
        "pages_running": counts.get(Page.Status.RUNNING, 0),
        "pages_queued": counts.get(Page.Status.QUEUED, 0),
        "timings": {
            "queued_s": round(((job.started_at or end) - job.created_at).total_seconds(), 2),
            "elapsed_s": round(elapsed, 2) if elapsed is not None else None,
            "pages_per_minute": round(60 * rate, 2) if rate else None,
            "page_recognition_ms": round(average_ms, 1) if average_ms is not None else None,
            "eta_s": (round(remaining / rate, 1) if rate else None) if job.status in Job.UNFINISHED else 0,
        },
    }


def failures(job: Job) -> list[dict]:
    return [{"page": p.index, "name": p.name, "file": p.source_name, "number": p.number, "code": p.error_code,
             "message": p.error_message}
            for p in Page.objects.filter(job=job, status=Page.Status.FAILED).order_by("index")]
