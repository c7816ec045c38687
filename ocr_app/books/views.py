"""The review workspace's book pages: each book's reviewed count and model, and its adaptation panel.

Kept apart from ocr_app/review (its own URLs and templates) so the two change independently.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from ..errors import ApiError
from ..jobs.models import Job
from ..review.views import reviewer_required
from . import selectors, services
from .models import BookAdaptation

SHOWN_CHANGED_LINES = 100


@require_GET
@reviewer_required
def books_page(request):
    return render(request, "ocr_app/books/list.html", {
        "books": selectors.books_with_counts()[:200], "min_lines": settings.OCR_ADAPT_MIN_LINES})


@require_GET
@reviewer_required
def book_page(request, pk: int):
    book = get_object_or_404(selectors.books_with_counts(), pk=pk)
    adaptation = selectors.latest_adaptation(book)
    return render(request, "ocr_app/books/panel.html", {
        "book": book, "adaptation": adaptation, "min_lines": settings.OCR_ADAPT_MIN_LINES,
        "running": adaptation is not None and adaptation.status in BookAdaptation.OPEN,
        "changed": (adaptation.changed_lines[:SHOWN_CHANGED_LINES] if adaptation else []),
    })


@require_POST
@reviewer_required
def adapt(request, pk: int):
    book = get_object_or_404(Job, pk=pk)
    try:
        services.request_adaptation(book, request.user)
        messages.success(request, "Adaptation queued: this page shows its progress.")
    except ApiError as exc:
        messages.error(request, exc.message)
    return redirect("books:book", pk=pk)
