"""Pages of the review workspace and its two JSON actions (save, skip).

Pages are Django templates; the actions are DRF views, so their errors go
through the API's one JSON error handler (``ocr_app.errors``).
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.parsers import FormParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..errors import ApiError
from ..models import Recognition
from ..parsers import StrictJSONParser
from . import selectors, services
from .forms import filters_from
from .selectors import KEYBOARD_ROW, is_reviewer

PASSED_OVER = "review_passed_over"  # session: lines this reviewer skipped (kept out of their queue)
HISTORY = "review_history"          # session: lines this reviewer opened, for "previous line"
SESSION_LIST_LIMIT = 500


def reviewer_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_reviewer(request.user):
            raise PermissionDenied("reviewers only")
        return view(request, *args, **kwargs)
    return wrapper


class IsReviewer(permissions.BasePermission):
    message = "the review workspace is for staff and reviewers"

    def has_permission(self, request, view):
        return is_reviewer(request.user)


def _remember(request, key: str, pk: int) -> None:
    ids = [i for i in request.session.get(key, []) if i != pk] + [pk]
    request.session[key] = ids[-SESSION_LIST_LIMIT:]


def _line_url(pk: int, query: str) -> str:
    return reverse("review:line", args=[pk]) + query


def _next_url(request, query: str) -> str:
    """Claim the reviewer's next line and return its page, or the queue page when none is left."""
    _, filters, _ = filters_from(request.GET)
    line = services.claim_next(request.user, selectors.review_queue(filters), request.session.get(PASSED_OVER, []))
    if line is None:
        return reverse("review:queue") + (query + "&" if query else "?") + "done=1"
    return _line_url(line.pk, query)


@require_GET
@reviewer_required
def queue_page(request):
    form, filters, query = filters_from(request.GET)
    try:
        queue = selectors.review_queue(filters)
        lines = list(selectors.with_pages(queue)[:50])
    except ApiError as exc:
        messages.error(request, exc.message)
        queue, lines = selectors.review_queue({}), []
    return render(request, "ocr_app/review/queue.html", {
        "form": form, "query": query, "lines": lines, "progress": selectors.progress(request.user, queue),
        "done": request.GET.get("done") == "1",
        "skipped": queue.filter(pk__in=request.session.get(PASSED_OVER, [])).count(),  # still in this queue
    })


@require_POST
@reviewer_required
def start(request):
    """Take the first line of the (filtered) queue; 'start over' also forgets the skipped lines."""
    if request.POST.get("forget_skipped"):
        request.session[PASSED_OVER] = []
    _, _, query = filters_from(request.GET)
    return redirect(_next_url(request, query))


@require_GET
@never_cache  # opening the line claims it and shows its live review: Back loads it again, not a stale copy
@reviewer_required
def line_page(request, pk: int):
    line = get_object_or_404(Recognition.objects.select_related("image", "model_version", "reviewed_by"), pk=pk)
    _, filters, query = filters_from(request.GET)
    try:
        services.claim(line, request.user)
    except services.LineClaimedError as exc:
        return render(request, "ocr_app/review/claimed.html", {"holder": exc.holder, "query": query}, status=409)
    history = request.session.get(HISTORY, [])
    if pk not in history:  # a line opened again keeps its place, so Up walks back through the order seen
        history = request.session[HISTORY] = (history + [pk])[-SESSION_LIST_LIMIT:]
    position = history.index(pk)
    previous = history[position - 1] if position > 0 else None
    return render(request, "ocr_app/review/line.html", {
        "line": line, "query": query, "characters": selectors.shown_characters(line),
        "text": line.final_text, "keyboard": KEYBOARD_ROW,
        "progress": selectors.progress(request.user, selectors.review_queue(filters)),
        "previous_url": _line_url(previous, query) if previous else "",
        "page": selectors.page_context(line, filters.get("job")), "threshold": settings.OCR_REVIEW_LOW_CONFIDENCE,
        "seen": services.review_stamp(line),
    })


@require_GET
@reviewer_required
def line_image(request, pk: int):
    """The stored line image, for reviewers (the /media/ view is staff-only)."""
    line = get_object_or_404(Recognition.objects.select_related("image"), pk=pk)
    return FileResponse(line.image.file.open("rb"))


# The workspace's own endpoints, called by its page only: not part of the public API schema.
@extend_schema(exclude=True)
class SaveLineApi(APIView):
    """Save the reviewer's text (verified if unchanged, corrected if edited) and claim the next line."""

    permission_classes = [IsReviewer]
    parser_classes = [StrictJSONParser, FormParser]

    def post(self, request, pk: int):
        line = get_object_or_404(Recognition, pk=pk)
        data = request.data if isinstance(request.data, dict) else {}  # a JSON list or string has no fields
        text, seen = data.get("text"), data.get("seen")
        if not isinstance(text, str):
            raise ApiError("invalid_request", "send the line's text as 'text'")
        if seen is not None and not isinstance(seen, str):
            raise ApiError("invalid_request", "'seen' is the line's review stamp as its page showed it, a string")
        services.save(line, request.user, text, seen=seen)
        _, _, query = filters_from(request.GET)
        return Response({"id": line.pk, "status": line.status, "next_url": _next_url(request, query)})


@extend_schema(exclude=True)
class SkipLineApi(APIView):
    """Leave a line for later: it leaves this reviewer's queue (not others') and its claim is released."""

    permission_classes = [IsReviewer]

    def post(self, request, pk: int):
        line = get_object_or_404(Recognition, pk=pk)
        _remember(request, PASSED_OVER, line.pk)
        _, _, query = filters_from(request.GET)
        return Response({"id": line.pk, "next_url": _next_url(request, query)})
