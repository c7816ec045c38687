"""What a reviewer sees: the queue (filtered, worst first), one line's characters, progress."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from ..errors import ApiError
from ..jobs.models import Page, PageLine
from ..models import Recognition
from ..selectors import filter_recognitions

# The characters a Latin keyboard lacks, for the on-screen row (logical order, no presentation forms).
KEYBOARD_ROW = ["ء", "أ", "إ", "آ", "ؤ", "ئ", "ة", "ى", "ـ", "«", "»", "،", "؛", "؟"]


def is_reviewer(user) -> bool:
    """Staff, and users given the reviewer permission, may use the workspace."""
    return bool(user.is_authenticated and user.is_active
                and (user.is_staff or user.has_perm("ocr_app.review_recognitions")))


def worst_first(queryset: QuerySet[Recognition]) -> QuerySet[Recognition]:
    """The queue's order: the lines most likely to be wrong come first.

    That is the line confidence, lowest first: since the model's confidences
    are calibrated it is the probability that the line is read exactly right
    (``recognition.calibration``), the best predictor of a line's errors we
    have. A better score is this one line to change.
    """
    return queryset.order_by("confidence", "id")


def job_id_from(value) -> int | None:
    """A job id as typed in a query string, or None. ASCII digits only: ``"²".isdigit()`` is true but
    ``int("²")`` raises, and so does ``int()`` of more than 4300 digits (the bound keeps it in a bigint)."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def review_queue(params) -> QuerySet[Recognition]:
    """Lines matching the workspace filters (``status`` defaults to unreviewed), worst first.

    ``params`` are the filters of GET /api/v1/recognitions/ (status, model,
    min/max_confidence, created_after/before) and ``job``: the lines of one
    job's pages (a job is a book); a bad one raises ApiError.
    """
    params = {key: value for key, value in params.items() if value not in (None, "")}
    params.setdefault("status", Recognition.Status.UNREVIEWED)
    if params["status"] == "all":
        del params["status"]
    queryset = Recognition.objects.select_related("image", "model_version", "reviewed_by")
    if job := params.pop("job", None):
        if (job_id := job_id_from(job)) is None:
            raise ApiError("invalid_filter", f"job must be a job id, not {job!r}")
        # A subquery, not a join: a line that appears twice in a book is still one line of the queue.
        queryset = queryset.filter(pk__in=PageLine.objects.filter(page__job_id=job_id).values("recognition_id"))
    return worst_first(filter_recognitions(queryset, params))


def with_pages(queryset: QuerySet[Recognition]) -> QuerySet[Recognition]:
    """The queue with each line's pages fetched in one more query (``line.page_lines.all``), for listing."""
    return queryset.prefetch_related(Prefetch(
        "page_lines", queryset=PageLine.objects.select_related("page__job").order_by("-page_id")))


def claimable(queryset: QuerySet[Recognition], reviewer, now: datetime.datetime) -> QuerySet[Recognition]:
    """Lines nobody else holds an unexpired claim on."""
    return queryset.exclude(Q(review_claim__expires_at__gt=now) & ~Q(review_claim__reviewer=reviewer))


def current_claim_holder(recognition: Recognition, now: datetime.datetime | None = None):
    """The user whose unexpired claim is on ``recognition``, or None."""
    from .models import ReviewClaim

    claim = (ReviewClaim.objects.select_related("reviewer")
             .filter(recognition=recognition, expires_at__gt=now or timezone.now()).first())
    return claim.reviewer if claim else None


@dataclass(frozen=True)
class ShownCharacter:
    char: str
    confidence: float
    low: bool


def shown_characters(recognition: Recognition) -> list[ShownCharacter]:
    """The recognised characters in logical order, flagged below the highlight threshold."""
    threshold = settings.OCR_REVIEW_LOW_CONFIDENCE
    return [ShownCharacter(c["char"], c["confidence"], c["confidence"] < threshold)
            for c in recognition.characters]


@dataclass(frozen=True)
class Progress:
    reviewed_today: int
    left_in_queue: int


def progress(reviewer, queue: QuerySet[Recognition]) -> Progress:
    """Lines this reviewer reviewed since midnight (server time zone) and unreviewed lines left in ``queue``."""
    midnight = timezone.make_aware(datetime.datetime.combine(timezone.localdate(), datetime.time.min))
    reviewed = Recognition.objects.filter(reviewed_by=reviewer, reviewed_at__gte=midnight).count()
    left = queue.filter(status=Recognition.Status.UNREVIEWED).count()
    return Progress(reviewed, left)


@dataclass(frozen=True)
class PageContext:
    """Where a line sits on its page, for ``review/_page_context.html``; coordinates in page pixels."""

    page_id: int
    page_name: str
    job_id: int | None
    job_name: str
    line_index: int
    line_count: int
    width: int
    height: int
    polygon: str   # "x,y x,y ...", as an SVG polygon wants it
    thumbnail_url: str


def page_context(recognition: Recognition, job_id: int | str | None = None) -> PageContext | None:
    """The page a line came from, with its polygon, for the page thumbnail; None for a single line upload.

    The same line image read again (the page in a second job) is one
    recognition on several pages: the page of ``job_id`` if it is on one
    there, else the latest.
    """
    links = (PageLine.objects.filter(recognition=recognition, page__status=Page.Status.DONE,
                                     page__width__isnull=False, page__file__isnull=False)
             .select_related("page__job").order_by("-page_id"))
    link = None
    if job_id and job_id_from(job_id) is not None:
        link = links.filter(page__job_id=job_id_from(job_id)).first()
    link = link or links.first()
    if link is None:
        return None
    page = link.page
    return PageContext(
        page_id=page.pk, page_name=page.name, job_id=page.job_id, job_name=page.job.name if page.job else "",
        line_index=link.index, line_count=page.line_count, width=page.width, height=page.height,
        polygon=" ".join(f"{x},{y}" for x, y in link.polygon),
        thumbnail_url=reverse("page-thumbnail", args=[page.pk]))
