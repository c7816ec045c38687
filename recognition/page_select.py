"""One page of a multi-page file, without decoding the pages before it.

``recognition.page_loader.iter_pages`` walks a file from its first page; a job
reads page 250 of a PDF in one task and must not render 249 pages first. For
a PDF the child process that renders pages (``recognition.pdf_sandbox``, as
``iter_pages`` uses it) is asked for that page alone; for a multi-page image
the wanted frame is sought directly and converted exactly as ``iter_pages``
converts frames. Either way the pixels come from the same loader code.

A job's book is given by its path, so that a page costs that page: the PDF
renderer's child opens the file itself (only the path crosses to it, not a
copy of the whole file a page), and a multi-page image is read from disk up to
the frame wanted.
"""

from __future__ import annotations

import os

from .image import to_grey
from .image_file import ImageError, check_pixels, open_image, picture_count, upright
from .page_loader import DEFAULT_MAX_PAGE_PIXELS, FRAME_ERRORS, LoadedPage, file_head, iter_pages, page_error
from .pdf_sandbox import PDF_DPI, pdf_pages


def load_page(source: bytes | str | os.PathLike, number: int,
              max_pixels: int = DEFAULT_MAX_PAGE_PIXELS) -> LoadedPage:
    """Page ``number`` (1-based) of an image, multi-page TIFF or PDF (the file's bytes or its path), as an 8-bit
    grey page."""
    head = file_head(source)
    if not head:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    if head == b"%PDF-":
        (_, grey), = pdf_pages(source, max_pixels, numbers=[number])
        return LoadedPage(number, grey, float(PDF_DPI))
    with open_image(source, max_pixels, "page 1", check_first_frame=number == 1) as image:
        if number == 1 and picture_count(image) == 1:
            return next(iter_pages(source, max_pixels))   # the common case: the loader itself, unchanged
        return _frame(image, number, max_pixels)


def _frame(image, number: int, max_pixels: int) -> LoadedPage:
    try:
        image.seek(number - 1)
    except EOFError:
        raise ImageError("no_such_page", f"the file has no page {number}") from None
    except FRAME_ERRORS as exc:   # a frame directory before it is truncated or corrupt, or the frame too large
        raise page_error(number, exc) from None
    check_pixels(*image.size, max_pixels, f"page {number}")
    try:
        image.load()
    except FRAME_ERRORS as exc:
        raise page_error(number, exc) from None
    dpi = image.info.get("dpi", (None,))[0]
    return LoadedPage(number, to_grey(upright(image.copy())), float(dpi) if dpi else None)
