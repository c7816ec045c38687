from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A registered ONNX recogniser. Exactly one is active at a time."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    path = models.CharField(max_length=500, help_text="ONNX file, absolute or relative to the project")
    sha256 = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, help_text="the model file's own metadata_props")
    validation_cer = models.FloatField(null=True, blank=True)
    reference_cer = models.FloatField(null=True, blank=True, help_text="CER on the reference set when activated")
    is_active = models.BooleanField(default=False)
    registered_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    book = models.ForeignKey("ocr_app.Job", on_delete=models.PROTECT, null=True, blank=True,
                             related_name="scoped_models",
                             help_text="adapted to this book (job) and used for it only; empty: a global model")

    class Meta:
        ordering = ["-registered_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version"),
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}" + (" (active)" if self.is_active else "")

    @property
    def file_path(self) -> Path:
        """The ONNX file (``path`` is stored relative to the project when it is inside it)."""
        path = Path(self.path)
        return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def image_path(sha256: str, extension: str) -> str:
    """Where a line image is stored: its name is its content's hash (see ocr_app.storage)."""
    return f"lines/{sha256[:2]}/{sha256}{extension}"


def _image_path(instance: StoredImage, filename: str) -> str:
    return image_path(instance.sha256, instance.extension)


class StoredImage(models.Model):
    """An uploaded line image, stored once per content (SHA-256)."""

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to=_image_path)
    extension = models.CharField(max_length=10, default=".png")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.width}x{self.height})"


class Recognition(models.Model):
    class Status(models.TextChoices):
        UNREVIEWED = "unreviewed", "unreviewed"
        VERIFIED = "verified", "verified (correct as recognised)"
        CORRECTED = "corrected", "corrected by a reviewer"

    image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="recognitions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="recognitions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="recognitions")
    text = models.TextField(blank=True)
    confidence = models.FloatField()
    characters = models.JSONField(default=list)
    duration_ms = models.FloatField()
    cached = models.BooleanField(default=False, help_text="copied from another user's run on the same image and "
                                                          "model (internal: the API never tells the user)")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNREVIEWED, db_index=True)
    corrected_text = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="reviews")
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["image", "model_version"])]
        constraints = [
            # What identifies a result: one recognition of an image by a model per user, so that
            # concurrent uploads of one image cannot store (or run) it twice.
            models.UniqueConstraint(fields=["image", "model_version", "user"], name="one_recognition_per_image_model_user"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.text[:40]}"

    @property
    def final_text(self) -> str:
        """What the line really says, as far as we know."""
        return self.corrected_text if self.status == self.Status.CORRECTED else self.text


from .books.models import BookAdaptation  # noqa: E402,F401  (book adaptation: ocr_app/books/)
from .jobs.models import Job, Page, PageFile, PageLine  # noqa: E402,F401  (books as jobs: ocr_app/jobs/)
from .review.models import ReviewClaim  # noqa: E402,F401  (registered with the app; defined beside its workspace)
