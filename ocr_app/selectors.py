"""Read-side queries: who may see which recognitions, and list filters."""

from __future__ import annotations

import datetime
import math

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .errors import ApiError
from .models import ModelVersion, Recognition


def recognitions_visible_to(user) -> QuerySet[Recognition]:
    """Staff see every recognition; everyone else sees their own."""
    queryset = Recognition.objects.select_related("model_version", "image")
    return queryset if user.is_staff else queryset.filter(user=user)


def parse_when(value: str):
    """An ISO date or date-time as an aware UTC datetime (dates at midnight UTC), or None.

    None also for well-formed impossible dates (2026-02-30) and for instants whose
    UTC form falls outside years 1-9999 (9999-12-31T23:59:59-23:59): the
    databases store UTC and would overflow on them.
    """
    try:
        when = parse_datetime(value)
        if when is None and len(value) == 10:
            day = parse_date(value)
            when = datetime.datetime.combine(day, datetime.time.min) if day else None
        if when is None:
            return None
        when = timezone.make_aware(when, datetime.UTC) if timezone.is_naive(when) else when
        return when.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        return None


def _parse_when(value: str, field: str):
    when = parse_when(value)
    if when is None:
        raise ApiError("invalid_filter", f"{field} must be an ISO date or date-time, got {value!r}")
    return when


def _parse_float(value: str, field: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ApiError("invalid_filter", f"{field} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ApiError("invalid_filter", f"{field} must be a finite number, got {value!r}")
    return number


def _check_text(value: str, field: str) -> str:
    """PostgreSQL refuses NUL in any string; refuse it first, as a client error."""
    if "\x00" in value:
        raise ApiError("invalid_filter", f"{field} must not contain NUL characters")
    return value


FILTERS = ("created_after", "created_before", "min_confidence", "max_confidence", "status", "model")


def _check_given_once(params) -> None:
    """A filter named twice (which one wins?) or given empty (?min_confidence=) is a malformed request, not
    "no filter": answering every line to it would hide the client's mistake."""
    for field in FILTERS:
        if field not in params:
            continue
        values = params.getlist(field) if hasattr(params, "getlist") else [params[field]]
        if len(values) > 1:
            raise ApiError("invalid_filter", f"{field} is given {len(values)} times; give it once")
        if values[0] == "":
            raise ApiError("invalid_filter", f"{field} is empty; leave it out not to filter by it")


def filter_recognitions(queryset: QuerySet[Recognition], params) -> QuerySet[Recognition]:
    """Filters of GET /api/v1/recognitions/: created_after/before, min/max_confidence, status, model."""
    _check_given_once(params)
    if value := params.get("created_after"):
        queryset = queryset.filter(created_at__gte=_parse_when(value, "created_after"))
    if value := params.get("created_before"):
        queryset = queryset.filter(created_at__lt=_parse_when(value, "created_before"))
    if value := params.get("min_confidence"):
        queryset = queryset.filter(confidence__gte=_parse_float(value, "min_confidence"))
    if value := params.get("max_confidence"):
        queryset = queryset.filter(confidence__lte=_parse_float(value, "max_confidence"))
    if value := params.get("status"):
        statuses = value.split(",")
        unknown = set(statuses) - set(Recognition.Status.values)
        if unknown:
            raise ApiError("invalid_filter", f"unknown status {', '.join(sorted(unknown))}; "
                                             f"use {', '.join(Recognition.Status.values)}")
        queryset = queryset.filter(status__in=statuses)
    if value := params.get("model"):
        # The forms an upload's ``model`` takes (``registry.find_version``): name, version, or name:version.
        name, _, version = _check_text(value, "model").partition(":")
        if version:
            queryset = queryset.filter(model_version__name=name, model_version__version=version)
        else:
            queryset = queryset.filter(Q(model_version__name=name) | Q(model_version__version=name))
    return queryset


def registered_models() -> QuerySet[ModelVersion]:
    """The global models (a model adapted to one book is that book's, see ocr_app.books)."""
    return ModelVersion.objects.filter(book__isnull=True)
