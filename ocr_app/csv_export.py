"""Recognitions as CSV (the API's ?format=csv and the admin action): one row per recognition."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from .models import Recognition

COLUMNS = ["id", "created_at", "user", "model", "model_version", "status", "confidence", "text",
           "corrected_text", "final_text", "reviewed_by", "reviewed_at", "image_sha256", "duration_ms", "cached",
           "characters"]
# A cell starting with one of these is a formula to a spreadsheet; a leading quote keeps it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _row(r: Recognition) -> list[str]:
    return [spreadsheet_cell(v) for v in (
        r.pk, r.created_at.isoformat(), r.user.get_username() if r.user else "", r.model_version.name,
        r.model_version.version, r.status, f"{r.confidence:.4f}", r.text, r.corrected_text, r.final_text,
        r.reviewed_by.get_username() if r.reviewed_by else "", r.reviewed_at.isoformat() if r.reviewed_at else "",
        r.image.sha256, r.duration_ms, "true" if r.cached else "false",
        json.dumps(r.characters, ensure_ascii=False) if r.characters else "",
    )]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(recognitions: Iterable[Recognition]) -> Iterator[str]:
    """The header and one CSV line per recognition, UTF-8 text with a BOM so spreadsheets read the Arabic."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(COLUMNS)
    for recognition in recognitions:
        yield writer.writerow(_row(recognition))


def csv_response(queryset: QuerySet[Recognition], filename: str = "recognitions.csv") -> StreamingHttpResponse:
    rows = queryset.select_related("user", "model_version", "reviewed_by", "image").iterator(chunk_size=500)
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CsvRenderer(BaseRenderer):
    """Makes ``?format=csv`` (and ``Accept: text/csv``) a format of a list API; the view streams the CSV."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise AssertionError("CSV is streamed by the view; other answers are JSON (CsvFormatMixin)")


class CsvFormatMixin:
    """For an APIView whose GET streams CSV when asked: everything else it answers stays JSON (errors too)."""

    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CsvRenderer]

    @staticmethod
    def wants_csv(request) -> bool:
        return getattr(request, "accepted_renderer", None) is not None and request.accepted_renderer.format == "csv"

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and self.wants_csv(request):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
