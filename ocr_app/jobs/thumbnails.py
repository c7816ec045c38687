"""A stored page as a small PNG, for showing a line in its page (review) and a page's result (upload page).

A page may be one page of a PDF or TIFF, which a browser cannot show as an
image, so the page is loaded as the recogniser loads it (the line polygons are
in those pixels) and scaled down. Thumbnails are stored content-addressed
beside the page files, so a page is rendered once however often it is shown.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image

from recognition.page_select import load_page

from .models import Page
from .storage import local_path, write_once

THUMBNAIL_WIDTH = 1000  # pixels: sharp at the width the pages show it, small enough to send at once


def thumbnail_name(page: Page, width: int = THUMBNAIL_WIDTH) -> str:
    sha = page.file.sha256
    return f"thumbnails/{sha[:2]}/{sha}-p{page.number}-w{width}.png"


def page_thumbnail(page: Page, width: int = THUMBNAIL_WIDTH) -> bytes:
    """PNG of the page at most ``width`` pixels wide (never enlarged); raises ImageError if it cannot be read."""
    name = thumbnail_name(page, width)
    if default_storage.exists(name):
        with default_storage.open(name, "rb") as stored:
            return stored.read()
    with local_path(page.file.file.name, page.file.file.storage) as path:
        # the limit the page was read under: a page sent alone may be larger than a job's pages
        limit = settings.OCR_JOB_MAX_PAGE_PIXELS if page.job_id else settings.OCR_MAX_PAGE_PIXELS
        grey = load_page(path, page.number, limit).grey
    image = Image.fromarray(grey)
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    png = out.getvalue()
    write_once(name, png)
    return png
