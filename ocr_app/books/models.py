"""One adaptation of a model to one book: what was asked, how it went, what it measured."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class BookAdaptation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        ACCEPTED = "accepted"      # passed the gate: the book's pages now use the adapted model
        REJECTED = "rejected"      # trained, but worse on the book or forgetful: not activated
        FAILED = "failed"          # could not train (the reason says why)

    OPEN = (Status.QUEUED, Status.RUNNING)

    job = models.ForeignKey("ocr_app.Job", on_delete=models.CASCADE, related_name="adaptations")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                     related_name="book_adaptations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    base_model = models.ForeignKey("ocr_app.ModelVersion", on_delete=models.PROTECT, related_name="+",
                                   help_text="the book's model when adaptation was asked for")
    adapted_model = models.ForeignKey("ocr_app.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="adaptations")
    train_lines = models.PositiveIntegerField(default=0)
    heldout_lines = models.PositiveIntegerField(default=0)
    before_cer = models.FloatField(null=True, blank=True, help_text="the book's model on the held-out lines")
    after_cer = models.FloatField(null=True, blank=True, help_text="the adapted model on the held-out lines")
    reference_cer = models.FloatField(null=True, blank=True, help_text="the adapted model on the reference set")
    global_reference_cer = models.FloatField(null=True, blank=True,
                                             help_text="the global model on the reference set")
    reason = models.TextField(blank=True, help_text="the gate's verdict, or why it failed")
    progress = models.JSONField(default=dict, help_text="epoch, epochs, val CER per epoch, phase")
    log = models.TextField(blank=True, help_text="the end of the training output")
    changed_lines = models.JSONField(default=list, help_text="book lines whose reading the adapted model changed")
    rerecognised_lines = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    processed_by = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running it")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="heartbeat lease of that worker")
    minutes = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One adaptation at a time per book: a second press of the button cannot start a second run.
            models.UniqueConstraint(fields=["job"], condition=Q(status__in=["queued", "running"]),
                                    name="one_open_adaptation_per_book"),
        ]

    def __str__(self) -> str:
        return f"adaptation {self.pk} of job {self.job_id} ({self.status})"
