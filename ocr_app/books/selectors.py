"""Read side of books: their lines, reviewed counts, current model and adaptations."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from ..jobs.models import Job
from ..models import Recognition
from .models import BookAdaptation

REVIEWED = (Recognition.Status.VERIFIED, Recognition.Status.CORRECTED)


def book_recognitions(job: Job) -> QuerySet[Recognition]:
    """The book's lines, one recognition each (a line image repeated in the book is one recognition)."""
    return Recognition.objects.filter(page_lines__page__job=job).distinct()


def reviewed_lines(job: Job) -> QuerySet[Recognition]:
    """The book's reviewed lines in a stable order (the held-out slice is chosen by position in it)."""
    return book_recognitions(job).filter(status__in=REVIEWED).select_related("image").order_by("id")


def books_with_counts() -> QuerySet[Job]:
    """Every book with its line count, reviewed count and current model (the review workspace's list)."""
    return (Job.objects.select_related("model_version", "user")
            .annotate(lines=Count("pages__lines__recognition", distinct=True),
                      reviewed=Count("pages__lines__recognition", distinct=True,
                                     filter=Q(pages__lines__recognition__status__in=REVIEWED)))
            .order_by("-created_at", "-id"))


def latest_adaptation(job: Job) -> BookAdaptation | None:
    return job.adaptations.select_related("base_model", "adapted_model").first()


def adaptation_body(adaptation: BookAdaptation) -> dict:
    """What the API and the book panel show of an adaptation."""
    def model(version):
        return {"name": version.name, "version": version.version} if version else None

    return {
        "id": adaptation.pk,
        "book": adaptation.job_id,
        "status": adaptation.status,
        "base_model": model(adaptation.base_model),
        "adapted_model": model(adaptation.adapted_model),
        "train_lines": adaptation.train_lines,
        "heldout_lines": adaptation.heldout_lines,
        "before_cer": adaptation.before_cer,
        "after_cer": adaptation.after_cer,
        "reference_cer": adaptation.reference_cer,
        "global_reference_cer": adaptation.global_reference_cer,
        "reason": adaptation.reason,
        "progress": adaptation.progress,
        "log": adaptation.log,
        "rerecognised_lines": adaptation.rerecognised_lines,
        "changed_lines": adaptation.changed_lines,
        "attempts": adaptation.attempts,
        "minutes": adaptation.minutes,
        "created_at": adaptation.created_at.isoformat(),
        "started_at": adaptation.started_at.isoformat() if adaptation.started_at else None,
        "finished_at": adaptation.finished_at.isoformat() if adaptation.finished_at else None,
    }
