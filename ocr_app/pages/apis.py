"""HTTP for pages sent on their own: validate, call the service, shape the answer.

``?format=`` here names a page output (json, txt, alto, page, hocr), not one of
DRF's renderers: content negotiation always picks JSON (so every error is
JSON) and the other formats are answered as documents of their own media type.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from recognition.page_formats import FORMAT_SUFFIXES, MEDIA_TYPES

from ..apis import PARSERS, _model_param, base64_image_field, errors
from ..errors import ApiError
from ..jobs.models import Page
from ..serializers import ModelRefSerializer
from . import selectors, services

FORMATS = ("json", "txt", "alto", "page", "hocr")
ALWAYS = (401, 403, 405, 429, 500)


class PageUploadSerializer(serializers.Serializer):
    """Documents the request: multipart ``image`` file, or JSON base64 ``image``."""

    image = serializers.FileField(help_text="one page image: PNG, JPEG, TIFF (one frame), BMP, WebP, GIF or a "
                                            "one-page PDF (multipart), or base64 / data URL in JSON. Multi-page "
                                            "TIFFs and PDFs go to POST /api/v1/jobs/")
    model = serializers.CharField(required=False, allow_blank=True, default="",
                                  help_text="model name, version or name:version (default: the active model)")


PAGE_RESPONSE = inline_serializer("PageResult", {
    "id": serializers.IntegerField(),
    "url": serializers.URLField(help_text="GET it again, or ?format=txt|alto|page|hocr"),
    "name": serializers.CharField(help_text="the file stem of its outputs"),
    "file": serializers.CharField(help_text="the uploaded file's name"),
    "image_sha256": serializers.CharField(help_text="the stored page file (content-addressed)"),
    "line_count": serializers.IntegerField(),
    "duration_ms": serializers.FloatField(help_text="loading and recognising the page"),
    "created_at": serializers.DateTimeField(),
    "width": serializers.IntegerField(),
    "height": serializers.IntegerField(),
    "skew_degrees": serializers.FloatField(),
    "model": ModelRefSerializer(),
    "text": serializers.CharField(help_text="the page in reading order, a blank line between regions"),
    "regions": serializers.JSONField(help_text="in reading order: [{id, kind, polygon, lines: [{id, polygon, "
                                               "baseline, x_height, text, confidence, characters[{char, "
                                               "confidence}], recognition_id}]}]; recognition_id is the line's "
                                               "stored recognition (GET /api/v1/recognitions/{id}/)"),
})


def _page_image(request) -> tuple[str, bytes]:
    if "image" in request.FILES:
        upload = request.FILES["image"]
        if upload.size is not None and upload.size > settings.OCR_MAX_PAGE_BYTES:
            raise ApiError("file_too_large", f"{upload.name} is {upload.size} bytes; the limit for a page is "
                                             f"{settings.OCR_MAX_PAGE_BYTES}", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        return upload.name or "page", upload.read()
    return "page", base64_image_field(request, "the page")


def page_body(page: Page, request) -> dict:
    url = request.build_absolute_uri(f"/api/v1/pages/{page.pk}/")
    return {"id": page.pk, "url": url, "name": page.name, "file": page.source_name, "image_sha256": page.file.sha256,
            "line_count": page.line_count, "duration_ms": page.duration_ms,
            "created_at": page.finished_at.isoformat(), **selectors.page_document(page)}


class JsonOnlyNegotiation:
    """Answers (and errors) are JSON whatever ?format= or Accept say; the view answers the other formats itself."""

    def perform_content_negotiation(self, request, force=False):
        return JSONRenderer(), JSONRenderer.media_type


class PageCreateApi(JsonOnlyNegotiation, APIView):
    """A page image is read in the request: regions and lines in reading order, each line stored as a
    recognition linked to the page (reviewable in page context). Books go to the jobs API."""

    parser_classes = PARSERS

    @extend_schema(summary="Recognise one page: regions and lines in reading order, stored for review",
                   request=PageUploadSerializer,
                   responses={201: PAGE_RESPONSE,
                              400: OpenApiResponse(errors(400)[400].response, description=(
                                  "not_an_image, corrupt_image, empty_file, missing_image, invalid_base64, "
                                  "unknown_model, or multi_page_document (a multi-page TIFF or PDF: send it to "
                                  "POST /api/v1/jobs/)")),
                              **errors(413, 415, 503, *ALWAYS)})
    def post(self, request):
        name, data = _page_image(request)
        page = services.recognize_page_upload(request.user, name, data, _model_param(request))
        return Response(page_body(page, request), status=status.HTTP_201_CREATED)


class PageDetailApi(JsonOnlyNegotiation, APIView):
    """A page you sent, in the format asked for (JSON by default), with the right content type."""

    @extend_schema(
        summary="A recognised page as JSON, plain text, ALTO 4, PAGE-XML 2019 or hOCR",
        parameters=[OpenApiParameter("format", str, enum=FORMATS, description=(
            "json (default): the page's JSON; txt: text/plain; alto: ALTO 4.4 and page: PAGE-XML 2019 "
            "(application/xml); hocr: hOCR 1.2 (application/xhtml+xml)"))],
        responses={(200, "application/json"): PAGE_RESPONSE, (200, "text/plain"): OpenApiTypes.STR,
                   (200, "application/xml"): OpenApiTypes.STR, (200, "application/xhtml+xml"): OpenApiTypes.STR,
                   **errors(400, 404, *ALWAYS)})
    def get(self, request, pk: int):
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            raise ApiError("invalid_request", f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        page = get_object_or_404(selectors.pages_visible_to(request.user), pk=pk)
        if fmt == "json":
            return Response(page_body(page, request))
        response = HttpResponse(page.outputs[fmt], content_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(False, f"{page.name}{FORMAT_SUFFIXES[fmt]}")
        return response
