"""Read-side queries: who may see which recognitions, and list filters."""

from __future__ import annotations

import datetime

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .errors import ApiError
from .models import ModelVersion, Recognition


def recognitions_visible_to(user) -> QuerySet[Recognition]:
    """Staff see every recognition; everyone else sees their own."""
    queryset = Recognition.objects.select_related("model_version", "image")
    return queryset if user.is_staff else queryset.filter(user=user)


def parse_when(value: str):
    """An ISO date or date-time as an aware datetime (dates at midnight UTC), or None."""
    try:
        when = parse_datetime(value)
    except ValueError:
        when = None
    if when is None:
        day = parse_date(value) if len(value) == 10 else None
        if day is None:
            return None
        when = datetime.datetime.combine(day, datetime.time.min)
    return timezone.make_aware(when, datetime.UTC) if timezone.is_naive(when) else when


def _parse_when(value: str, field: str):
    when = parse_when(value)
    if when is None:
        raise ApiError("invalid_filter", f"{field} must be an ISO date or date-time, got {value!r}")
    return when


def _parse_float(value: str, field: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ApiError("invalid_filter", f"{field} must be a number, got {value!r}") from None


def filter_recognitions(queryset: QuerySet[Recognition], params) -> QuerySet[Recognition]:
    """Filters of GET /api/v1/recognitions/: created_after/before, min/max_confidence, status, model."""
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
        name, _, version = value.partition(":")
        queryset = queryset.filter(model_version__name=name)
        if version:
            queryset = queryset.filter(model_version__version=version)
    return queryset


def registered_models() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.all()
