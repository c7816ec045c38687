"""HTTP endpoints: validate the request, call a service, shape the answer."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import status
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import engine, registry, selectors, services, startup
from .csv_export import CsvFormatMixin, csv_response
from .errors import ApiError, error_body
from .parsers import StrictJSONParser
from .serializers import (
    BatchItemSerializer,
    BatchUploadSerializer,
    ErrorSerializer,
    ModelVersionSerializer,
    RecognitionSerializer,
    RecognitionUploadSerializer,
)

log = logging.getLogger("ocr_app.api")
PARSERS = [MultiPartParser, FormParser, StrictJSONParser]

_ERROR_MEANINGS = {
    400: "invalid input: the code says what (not_an_image, invalid_filter, unknown_model, ...)",
    401: "not_authenticated or authentication_failed",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "file_too_large, image_too_large or request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "internal_error, with a request_id",
    503: "no_active_model, or language_model_unavailable (OCR_LANGUAGE_MODEL names a file that cannot be used)",
}


def errors(*codes: int) -> dict:
    """The documented error answers of an operation (the same JSON shape for all)."""
    return {code: OpenApiResponse(ErrorSerializer, description=_ERROR_MEANINGS[code]) for code in codes}


_ALWAYS = (401, 403, 405, 429, 500)


def _positive_int(value: str) -> bool:
    """ASCII digits, not zero, short enough for int() (Python refuses strings of over 4300 digits)."""
    return value.isascii() and value.isdigit() and len(value) <= 18 and int(value) > 0


class RecognitionPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        # DRF answers a malformed page number with 404 "Invalid page.", which reads as "this list does not
        # exist"; an empty or repeated one it quietly took as page 1 or the last value given.
        for name in (self.page_query_param, self.page_size_query_param):
            values = request.query_params.getlist(name)
            if len(values) > 1:
                raise ApiError("invalid_filter", f"{name} is given {len(values)} times; give it once")
            if values and values[0] == "":
                raise ApiError("invalid_filter", f"{name} is empty; leave it out for the default")
        page = request.query_params.get(self.page_query_param)
        if page is not None and page not in self.last_page_strings and not _positive_int(page):
            raise ApiError("invalid_filter", f"page must be a page number from 1 (or 'last'), got {page[:40]!r}")
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        from django.conf import settings

        self.page_size = settings.REST_FRAMEWORK.get("PAGE_SIZE", 50)
        value = request.query_params.get(self.page_size_query_param)
        if value is not None and not (_positive_int(value) and int(value) <= self.max_page_size):
            # DRF would quietly use the default or the maximum; a client that asked for another size should know
            raise ApiError("invalid_filter", f"page_size must be an integer from 1 to {self.max_page_size}, "
                                             f"got {value[:40]!r}")
        return super().get_page_size(request)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters


def _read_file(upload) -> tuple[str, bytes]:
    from django.conf import settings

    if upload.size is not None and upload.size > settings.OCR_MAX_UPLOAD_BYTES:
        raise ApiError("file_too_large", f"{upload.name} is {upload.size} bytes; the limit is "
                                         f"{settings.OCR_MAX_UPLOAD_BYTES}", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return upload.name or "upload", upload.read()


def _single_image(request) -> tuple[str, bytes]:
    if "image" in request.FILES:
        return _read_file(request.FILES["image"])
    return "base64", base64_image_field(request, "the line image")


def base64_image_field(request, what: str) -> bytes:
    """The JSON body's base64 ``image`` field, decoded; or the 400 that says how to send ``what``."""
    value = request.data.get("image") if hasattr(request.data, "get") else None
    if isinstance(value, str) and value:
        return services.decode_base64_image(value)
    fields = sorted(set(request.FILES) | set(getattr(request.data, "keys", lambda: [])()))
    raise ApiError("missing_image", f"send {what} as a multipart file field named 'image' or as JSON "
                                    "{\"image\": \"<base64>\"}" + (f"; got fields: {', '.join(fields)}" if fields else ""))


def _model_param(request) -> str | None:
    value = request.data.get("model") if hasattr(request.data, "get") else None
    if value is not None and not isinstance(value, str):
        raise ApiError("invalid_request", "'model' must be a string")
    if value and "\x00" in value:  # PostgreSQL refuses NUL in strings
        raise ApiError("invalid_request", "'model' must not contain NUL characters")
    return value or None


class RecognitionListCreateApi(CsvFormatMixin, APIView):
    parser_classes = PARSERS
    pagination_class = RecognitionPagination  # read by the schema too: the list is documented paginated

    @extend_schema(
        summary="List recognitions (yours; staff: all)",
        parameters=[
            OpenApiParameter("created_after", str, description="ISO date or date-time"),
            OpenApiParameter("created_before", str, description="ISO date or date-time"),
            OpenApiParameter("min_confidence", float),
            OpenApiParameter("max_confidence", float),
            OpenApiParameter("status", str, description="unreviewed, verified, corrected (comma-separated)"),
            OpenApiParameter("model", str, description="model name, version or name:version (as an upload's model field)"),
            OpenApiParameter("format", str, description="csv: every matching recognition as CSV, not paginated"),
        ],
        responses={200: RecognitionSerializer(many=True), **errors(400, 404, *_ALWAYS)},
    )
    def get(self, request):
        queryset = selectors.filter_recognitions(selectors.recognitions_visible_to(request.user),
                                                 request.query_params)
        if self.wants_csv(request):
            return csv_response(queryset)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(RecognitionSerializer(page, many=True).data)

    @extend_schema(summary="Recognise one line image", request=RecognitionUploadSerializer,
                   responses={201: RecognitionSerializer, 200: RecognitionSerializer,
                              **errors(400, 413, 415, 503, *_ALWAYS)})
    def post(self, request):
        name, data = _single_image(request)
        recognition = services.recognize_one(request.user, name, data, _model_param(request))
        code = status.HTTP_200_OK if getattr(recognition, "reused", False) else status.HTTP_201_CREATED
        return Response(RecognitionSerializer(recognition).data, status=code)


class RecognitionBatchApi(APIView):
    parser_classes = PARSERS

    @extend_schema(summary="Recognise several line images in one model call", request=BatchUploadSerializer,
                   responses={200: inline_serializer("BatchResponse", {"results": BatchItemSerializer(many=True)}),
                              **errors(400, 413, 415, 503, *_ALWAYS)})
    def post(self, request):
        from django.conf import settings

        model = _model_param(request)  # checked first: a bad 'model' is refused even if every image is bad
        items: list[tuple[str, bytes | ApiError]] = []
        files = request.FILES.getlist("images")
        values = [] if files else (request.data.get("images") if hasattr(request.data, "get") else None) or []
        if not files and not values:
            raise ApiError("missing_image", "send the line images as multipart file fields named 'images' "
                                            "or as JSON {\"images\": [\"<base64>\", ...]}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError("invalid_request", "'images' must be a list of base64 strings")
        count = len(files) or len(values)
        if count > settings.OCR_MAX_BATCH:
            raise ApiError("batch_too_large", f"{count} images; the batch limit is {settings.OCR_MAX_BATCH}")
        for i, source in enumerate(files or values):
            try:
                items.append(_read_file(source) if files else (f"images[{i}]", services.decode_base64_image(source)))
            except ApiError as exc:
                items.append((getattr(source, "name", f"images[{i}]"), exc))
        decoded, answers = [], [None] * len(items)
        for i, (name, data) in enumerate(items):
            if isinstance(data, ApiError):
                answers[i] = {"index": i, "file": name, **error_body(data.error_code, data.message)}
                continue
            try:
                decoded.append((i, services.decode_upload(name, data)))
            except ApiError as exc:
                answers[i] = {"index": i, "file": name, **error_body(exc.error_code, exc.message)}
        if decoded:
            recognitions = services.recognize_uploads(request.user, [u for _, u in decoded], model)
            for (i, upload), recognition in zip(decoded, recognitions):
                if isinstance(recognition, ApiError):
                    answers[i] = {"index": i, "file": upload.name, **error_body(recognition.error_code,
                                                                                 recognition.message)}
                else:
                    answers[i] = {"index": i, "file": upload.name, "result": RecognitionSerializer(recognition).data}
        return Response({"results": answers}, status=status.HTTP_200_OK)


class RecognitionDetailApi(APIView):
    @extend_schema(summary="One recognition", responses={200: RecognitionSerializer, **errors(404, *_ALWAYS)})
    def get(self, request, pk: int):
        recognition = get_object_or_404(selectors.recognitions_visible_to(request.user), pk=pk)
        return Response(RecognitionSerializer(recognition).data)


class ModelListApi(APIView):
    @extend_schema(summary="Registered model versions",
                   responses={200: ModelVersionSerializer(many=True), **errors(*_ALWAYS)})
    def get(self, request):
        return Response(ModelVersionSerializer(selectors.registered_models(), many=True).data)


def healthz(request):
    """The process is alive (no dependencies checked)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready when the active model is loaded and warm and the database answers."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # report, do not crash the probe
        checks["database"] = f"error: {exc}"
    version = None
    if checks["database"] == "ok":
        try:
            version = registry.active_version()
        except registry.NoActiveModelError as exc:
            checks["model"] = str(exc)
    if version is not None:
        if not engine.is_loaded(version):
            startup.load_active_model()
        checks["model"] = "ok" if engine.is_loaded(version) else "not loaded"
    checks.setdefault("model", "not loaded")
    if engine.language_model_path() is not None:
        checks["language_model"] = engine.language_model_problem() or "ok"
        if checks["language_model"] == "ok" and version is not None and engine.unsuited(version):
            checks["language_model"] = engine.unsuited(version)
    ready = all(v == "ok" for v in checks.values())
    if ready:
        checks["active_model"] = f"{version.name} {version.version}"
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status=200 if ready else 503)


def staff_media(request, path: str):
    """Stored line images, for the admin's thumbnails: staff only, never public."""
    from django.conf import settings
    from django.views.static import serve

    return serve(request, path, document_root=settings.MEDIA_ROOT)
