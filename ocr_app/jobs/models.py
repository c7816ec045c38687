"""Jobs, their pages, and each page's lines stored as recognitions.

``Page`` and ``PageFile`` do not depend on jobs: a page recognised on its own
(the pages API) is a ``Page`` with no job. A page's image is its ``PageFile``
(stored once per content, SHA-256) plus its page ``number`` inside that file,
so a 300-page PDF is stored once and its pages point into it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


def _page_file_path(instance: PageFile, filename: str) -> str:
    return f"pages/{instance.sha256[:2]}/{instance.sha256}{instance.extension}"


class PageFile(models.Model):
    """An uploaded page image, multi-page TIFF or PDF, stored once per content."""

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to=_page_file_path, max_length=200)
    extension = models.CharField(max_length=10)
    size_bytes = models.PositiveBigIntegerField()
    page_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]}{self.extension} ({self.page_count} pages)"


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"          # every page failed
        CANCELLED = "cancelled"

    UNFINISHED = (Status.QUEUED, Status.RUNNING)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ocr_jobs")
    name = models.CharField(max_length=200)
    model_version = models.ForeignKey("ocr_app.ModelVersion", on_delete=models.PROTECT, related_name="jobs")
    formats = models.JSONField(default=list, help_text="per-page outputs asked for: txt, alto, page, hocr")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    pages_total = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A client that retries a POST (its answer was lost) sends the same key: the request answers this job.
    idempotency_key = models.CharField(max_length=255, blank=True, default="",
                                       help_text="the Idempotency-Key header of the request that created it")
    request_fingerprint = models.CharField(max_length=64, blank=True, default="",
                                           help_text="SHA-256 of that request's files (names, sizes, digests) and "
                                                     "parameters: the key sent with another request is refused")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "idempotency_key"], condition=~Q(idempotency_key=""),
                                               name="unique_idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"job {self.pk} {self.name} ({self.status})"


class Page(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    OPEN = (Status.QUEUED, Status.RUNNING)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, null=True, blank=True, related_name="pages")
    index = models.PositiveIntegerField(help_text="1-based position in its job (reading order of the book)")
    name = models.CharField(max_length=200, help_text="file stem of its outputs, e.g. book-p0003")
    source_name = models.CharField(max_length=255, help_text="the uploaded file (or zip member) it came from")
    file = models.ForeignKey(PageFile, on_delete=models.PROTECT, null=True, blank=True, related_name="pages",
                             help_text="empty when the upload could not be read at all")
    number = models.PositiveIntegerField(default=1, help_text="page number inside its file")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="times a worker started it")
    processed_by = models.CharField(max_length=200, blank=True, help_text="host:pid of the last worker to start it")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="in-process runner's lease")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    line_count = models.PositiveIntegerField(default=0)
    duration_ms = models.FloatField(null=True, blank=True, help_text="loading and recognising the page")
    store_ms = models.FloatField(null=True, blank=True, help_text="storing its lines, images and outputs")
    outputs = models.JSONField(default=dict, help_text="format -> document (txt, alto, page, hocr)")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A page sent on its own (POST /api/v1/pages/) has no job to say whose it is and which model reads it.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                             related_name="ocr_pages", help_text="owner of a page without a job")
    model_version = models.ForeignKey("ocr_app.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="pages", help_text="model of a page without a job")

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="unique_page_index_in_job")]
        indexes = [models.Index(fields=["job", "status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def owner(self):
        return self.job.user if self.job_id else self.user

    @property
    def reading_model(self):
        return self.job.model_version if self.job_id else self.model_version

    @property
    def output_formats(self) -> list[str]:
        """What to store besides txt: the job's choice; a page on its own keeps every format and its JSON."""
        return self.job.formats if self.job_id else ["alto", "page", "hocr", "json"]


class PageLine(models.Model):
    """One line of a page, stored as a recognition (reviewable like any other) with its geometry.

    A recognition is one per line image, model and user (a database constraint), so
    the same line read again (the same page in a second job) links to the same one.
    """

    page = models.ForeignKey(Page, on_delete=models.CASCADE, related_name="lines")
    recognition = models.ForeignKey("ocr_app.Recognition", on_delete=models.PROTECT, related_name="page_lines")
    index = models.PositiveIntegerField(help_text="1-based, in reading order")
    line_id = models.CharField(max_length=20, help_text="id in the page's ALTO/PAGE/hOCR, e.g. r1l3")
    polygon = models.JSONField(help_text="[[x, y], ...] in page pixels")
    baseline = models.JSONField(default=list)

    class Meta:
        ordering = ["page_id", "index"]
        constraints = [models.UniqueConstraint(fields=["page", "index"], name="unique_line_index_in_page")]

    def __str__(self) -> str:
        return f"{self.page.name} line {self.index}"
