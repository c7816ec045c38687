"""The upload page (it calls the public API with the session) and the page thumbnails pages show."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from recognition.image import ImageError

from ..jobs.thumbnails import page_thumbnail
from ..review.selectors import is_reviewer
from .selectors import pages_shown_to


@require_GET
@ensure_csrf_cookie
def home(request):
    return render(request, "ocr_app/home.html", {
        "max_upload_mb": settings.OCR_MAX_UPLOAD_BYTES / 2**20,
        "max_page_mb": settings.OCR_MAX_PAGE_BYTES / 2**20,
        "max_job_mb": settings.OCR_JOB_MAX_BYTES / 2**20,
    })


@require_GET
def page_thumbnail_image(request, pk: int):
    """A page, small, as PNG: for its owner, and for reviewers (who see every line, so every page)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    page = pages_shown_to(request.user, is_reviewer(request.user)).filter(pk=pk).first()
    if page is None:
        raise Http404("no such page")
    try:
        png = page_thumbnail(page)
    except ImageError:  # it was read once; a file that no longer reads has nothing to show
        raise Http404("the page image cannot be read") from None
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"  # a page's pixels never change
    return response
