"""Claiming, saving and skipping lines in the review workspace.

A claim is a lease: the reviewer who opens a line holds it for
``OCR_REVIEW_LEASE_SECONDS`` (renewed on every action), and another reviewer's
queue passes over it until it is saved, skipped or lapses. A reviewer holds at
most one claim: taking the next line releases the last one.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework import status

from .. import services
from ..errors import ApiError
from ..models import Recognition
from .models import ReviewClaim
from .selectors import claimable, current_claim_holder

CANDIDATES_PER_TRY = 20  # lines tried per claim attempt before the queue is read again


class LineClaimedError(ApiError):
    def __init__(self, holder):
        super().__init__("line_claimed", f"{holder.get_username()} is reviewing this line; take the next one",
                         status.HTTP_409_CONFLICT)
        self.holder = holder


class LineChangedError(ApiError):
    """Someone else's review landed since the page was opened. ``details`` carry their reading and its stamp:
    a save sent again with that stamp as ``seen`` replaces their reading knowingly (the review page does
    that on a second Enter), instead of every save failing until the page is reloaded."""

    def __init__(self, line: Recognition):
        who = line.reviewed_by.get_username() if line.reviewed_by else "someone"
        super().__init__("line_changed", f"{who} reviewed this line after you opened it (it now reads "
                                         f"{line.final_text!r}); save again to replace their reading, or open "
                                         f"the line again to start from it",
                         status.HTTP_409_CONFLICT,
                         details={"text": line.final_text, "reviewed_by": who, "seen": review_stamp(line)})


def review_stamp(line: Recognition) -> str:
    """What identifies the line's current review (empty while unreviewed): the review page sends it back."""
    return line.reviewed_at.isoformat() if line.reviewed_at else ""


def _lease_end(now: datetime.datetime) -> datetime.datetime:
    return now + datetime.timedelta(seconds=settings.OCR_REVIEW_LEASE_SECONDS)


def _take(recognition_id: int, reviewer, now: datetime.datetime) -> bool:
    """Claim one line if it is free, lapsed or already ours; False if another reviewer holds it."""
    ours_or_lapsed = Q(reviewer=reviewer) | Q(expires_at__lte=now)
    with transaction.atomic():
        taken = ReviewClaim.objects.filter(ours_or_lapsed, recognition_id=recognition_id).update(
            reviewer=reviewer, expires_at=_lease_end(now)) > 0
        if not taken:
            try:
                with transaction.atomic():
                    ReviewClaim.objects.create(recognition_id=recognition_id, reviewer=reviewer,
                                               expires_at=_lease_end(now))
            except IntegrityError:  # a live claim of someone else's, or one made just now
                return False
        ReviewClaim.objects.filter(reviewer=reviewer).exclude(recognition_id=recognition_id).delete()
    return True


def claim(recognition: Recognition, reviewer) -> None:
    """Take (or renew) the claim on one line; LineClaimedError if another reviewer holds it."""
    if not _take(recognition.pk, reviewer, timezone.now()):
        raise LineClaimedError(current_claim_holder(recognition) or reviewer)


def claim_next(reviewer, queue: QuerySet[Recognition], passed_over=()) -> Recognition | None:
    """Claim the first line of ``queue`` no one else holds, leaving out ``passed_over`` (skipped) ids."""
    while True:
        now = timezone.now()
        candidates = list(claimable(queue, reviewer, now).exclude(pk__in=list(passed_over))
                          .values_list("pk", flat=True)[:CANDIDATES_PER_TRY])
        if not candidates:
            release(reviewer)
            return None
        for pk in candidates:
            if not _take(pk, reviewer, now):
                continue
            if queue.filter(pk=pk).exists():  # still in the queue (not reviewed meanwhile)
                return queue.get(pk=pk)
            release(reviewer)
        # every candidate was taken or left the queue under us: read the queue again


def release(reviewer) -> None:
    ReviewClaim.objects.filter(reviewer=reviewer).delete()


def save(recognition: Recognition, reviewer, text: str, seen: str | None = None) -> Recognition:
    """Store the reviewer's reading: verified if it is the recognised text, corrected otherwise.

    An empty text is refused (a line with no text is not a line to train on),
    and so is a line another reviewer holds. With ``seen`` (``review_stamp`` as the reviewer's page showed
    it), a line reviewed by someone else since is refused too: after the reviewer's lease lapsed another one
    may have opened and saved it, and a stale tab's save would overwrite their reading unseen. A review the
    reviewer saved themself since (a second tab, a page the browser's Back button showed from its cache)
    is theirs to change: refusing it named them as the one who had changed the line.
    """
    if not isinstance(text, str) or not text.strip():
        raise ApiError("empty_text", "the corrected text is empty; type what the line says, or skip it")
    with transaction.atomic():
        current = Recognition.objects.select_for_update().get(pk=recognition.pk)
        if seen is not None and review_stamp(current) != seen and current.reviewed_by_id != reviewer.pk:
            raise LineChangedError(current)
        holder = current_claim_holder(recognition)
        if holder is not None and holder.pk != reviewer.pk:
            raise LineClaimedError(holder)
        services.review(recognition, reviewer, text.strip())
        ReviewClaim.objects.filter(recognition=recognition).delete()
    return recognition
