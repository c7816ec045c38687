"""Who is reviewing which line right now: a short lease, so two reviewers never get the same line."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ReviewClaim(models.Model):
    """A reviewer's lease on one line; it lapses at ``expires_at`` (a closed tab frees the line)."""

    # One claim per line: the unique row is what keeps two reviewers apart, on SQLite and PostgreSQL alike.
    recognition = models.OneToOneField("ocr_app.Recognition", on_delete=models.CASCADE, related_name="review_claim")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_claims")
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "ocr_app"
        permissions = [("review_recognitions", "Can review recognised lines in the review workspace")]

    def __str__(self) -> str:
        return f"line #{self.recognition_id} claimed by {self.reviewer_id} until {self.expires_at:%H:%M:%S}"
