"""HTTP for jobs: validate, call a service, shape the answer."""

from __future__ import annotations

import tempfile

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..apis import RecognitionPagination, errors
from ..errors import ApiError
from ..serializers import ErrorSerializer
from . import results, selectors, services
from .models import Job


def job_body(job: Job, request=None) -> dict:
    body = {
        "id": job.pk,
        "name": job.name,
        "status": job.status,
        "model": {"name": job.model_version.name, "version": job.model_version.version},
        "formats": job.formats,
        "user": job.user.get_username(),
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        **selectors.job_progress(job),
        "failures": selectors.failures(job),
    }
    path = f"/api/v1/jobs/{job.pk}/"
    body["url"] = request.build_absolute_uri(path) if request else path
    body["results_url"] = body["url"] + "results.zip"
    return body


class JobUploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(),
                                  help_text="page images, multi-page TIFFs, PDFs, or a zip of images")
    name = serializers.CharField(required=False, allow_blank=True)
    model = serializers.CharField(required=False, allow_blank=True, help_text="model name, version or name:version")
    formats = serializers.CharField(required=False, allow_blank=True,
                                    help_text="comma-separated: txt, alto, page, hocr (default all; a value naming none is 400 unknown_format)")


ALWAYS = (401, 403, 405, 429, 500)
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="job_finished (cancel) or job_not_finished (results)")}

JOB_RESPONSE = OpenApiResponse(OpenApiTypes.OBJECT, description="id, name, status, model, formats, pages_total, "
                               "pages_done, pages_failed, pages_cancelled, failures[], timings{..., eta_s}, urls")


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="1-255 printable ASCII characters, e.g. a fresh UUID per job, sent again on every retry of that "
                "POST: a request repeated with it answers the job already created (200, nothing stored again); the "
                "key sent with other files or parameters is 409 idempotency_key_reused; keys are per user")
REPEATED = OpenApiResponse(OpenApiTypes.OBJECT, description="the job this request's Idempotency-Key created "
                                                            "before (a retry), as GET gives it; nothing created")
SUBMIT_CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="idempotency_key_reused: the Idempotency-Key "
                                        "created a job from other files or parameters")}


def _text_field(request, name: str) -> str | None:
    value = request.data.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError("invalid_request", f"'{name}' must be a string")
    if value and ("\x00" in value or not value.isprintable()):  # PostgreSQL refuses NUL; names are shown
        raise ApiError("invalid_request", f"'{name}' must not contain control characters")
    return value or None


class JobListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(summary="List jobs (yours; staff: all)", operation_id="api_v1_jobs_list",
                   responses={200: JOB_RESPONSE, **errors(400, 404, *ALWAYS)})
    def get(self, request):
        paginator = RecognitionPagination()
        page = paginator.paginate_queryset(selectors.jobs_visible_to(request.user), request, view=self)
        return paginator.get_paginated_response([job_body(job, request) for job in page])

    @extend_schema(summary="Recognise a book: queue its pages, answer at once", request=JobUploadSerializer,
                   parameters=[IDEMPOTENCY_KEY],
                   responses={202: JOB_RESPONSE, 200: REPEATED, **SUBMIT_CONFLICT, **errors(400, 413, 415, 503, *ALWAYS)})
    def post(self, request):
        files, total = [], 0
        for upload in request.FILES.getlist("files"):
            if upload.size is not None and upload.size > settings.OCR_JOB_MAX_BYTES:
                raise ApiError("file_too_large", f"{upload.name} is {upload.size} bytes; the limit is "
                                                 f"{settings.OCR_JOB_MAX_BYTES}", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
            # the job's limit before the files are read into memory, not after all of them are
            total += upload.size or 0
            if total > settings.OCR_JOB_MAX_BYTES:
                raise ApiError("job_too_large", f"the files add up to more than {settings.OCR_JOB_MAX_BYTES} bytes",
                               status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
            files.append((upload.name or "upload", upload.read()))
        if not files and request.FILES:
            raise ApiError("missing_files", "send the pages as multipart file fields named 'files'; got fields: "
                                            + ", ".join(sorted(request.FILES)))
        formats = request.data.getlist("formats") if hasattr(request.data, "getlist") else None
        if formats and any("\x00" in f for f in formats):
            raise ApiError("invalid_request", "'formats' must not contain NUL characters")
        job, created = services.submit_job(request.user, files, name=_text_field(request, "name") or "",
                                           model=_text_field(request, "model"), formats=formats or None,
                                           idempotency_key=request.headers.get("Idempotency-Key"))
        return Response(job_body(job, request), status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class JobDetailApi(APIView):
    @extend_schema(summary="A job's status, progress, failures, timings and ETA",
                   responses={200: JOB_RESPONSE, **errors(404, *ALWAYS)})
    def get(self, request, pk: int):
        return Response(job_body(get_object_or_404(selectors.jobs_visible_to(request.user), pk=pk), request))


class JobCancelApi(APIView):
    @extend_schema(summary="Cancel a job: no further page is started", request=None,
                   responses={200: JOB_RESPONSE, **CONFLICT, **errors(404, *ALWAYS)})
    def post(self, request, pk: int):
        job = services.cancel_job(get_object_or_404(selectors.jobs_visible_to(request.user), pk=pk))
        return Response(job_body(job, request))


class JobResultsApi(APIView):
    @extend_schema(summary="The results: per-page files, the whole book as text, recognitions.csv",
                   responses={(200, "application/zip"): OpenApiTypes.BINARY, **CONFLICT, **errors(404, *ALWAYS)})
    def get(self, request, pk: int):
        job = get_object_or_404(selectors.jobs_visible_to(request.user), pk=pk)
        if job.status in Job.UNFINISHED:
            raise ApiError("job_not_finished", f"job {job.pk} is {job.status}; results come when it ends "
                                               "(done, failed or cancelled)", status.HTTP_409_CONFLICT)
        spooled = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
        results.write_results_zip(job, spooled)
        spooled.seek(0)
        return FileResponse(spooled, as_attachment=True, filename=f"job-{job.pk}-results.zip",
                            content_type="application/zip")
