"""Pages from a file: single images, multi-page TIFFs and PDFs (rendered at 300 dpi in a child process,
``recognition.pdf_sandbox``).

Each page comes out as an 8-bit grey array, converted exactly as line images
are (``recognition.image``): bilevel, palette, 16-bit, colour and alpha pages
all become grey on white paper.

A file is given as its bytes (an upload in memory) or its path (a stored
book). A path is opened where the pages are read: a PDF's path goes to the
child that renders it, a multi-page image is read from disk as far as the
page wanted; neither is read whole into the caller.
"""

from __future__ import annotations

import itertools
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageSequence

from .image import to_grey
from .image_file import READ_ERRORS, ImageError, check_pixels, open_image, primary_image_only, upright
from .pdf_sandbox import PDF_DPI, pdf_pages

DEFAULT_MAX_PAGE_PIXELS = 60_000_000   # a 600-dpi A3 scan


@dataclass
class LoadedPage:
    number: int          # 1-based, within its file
    grey: np.ndarray
    dpi: float | None


def _read(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return handle.read()
    return source.read()


def is_path(source) -> bool:
    return isinstance(source, (str, os.PathLike))


def bytes_or_path(source) -> bytes | str | os.PathLike:
    """A path as it is (opened where it is read), anything else (bytes, a binary file) as bytes."""
    return source if is_path(source) else _read(source)


def file_head(source: bytes | str | os.PathLike, size: int = 5) -> bytes:
    """The first ``size`` bytes: enough to tell a PDF (``%PDF-``) or an empty file."""
    if is_path(source):
        with open(source, "rb") as handle:
            return handle.read(size)
    return bytes(source[:size])


_PDF_STREAM_START = re.compile(rb"(?<!end)stream\r?\n")
_IMAGE_DICTIONARY = re.compile(rb"/Subtype\s*/Image\b")
_INFLATE_STEP = 1 << 16


def check_pdf_streams(data: bytes, max_stream_bytes: int) -> None:
    """Refuse a PDF whose Flate streams inflate beyond ``max_stream_bytes``: any one of them, or all
    of them together except images.

    pdfium inflates a page's content streams whole when it loads the page: a 0.5 MB PDF whose
    content stream is 512 MiB of spaces took 1 GB just to be counted, and so did four streams of
    128 MiB on one page. This inflates each stream a step at a time, keeping nothing, and stops at
    the bound. Images are bounded one by one (a scanned book's are big, and drawn one at a time);
    streams that are not zlib (JPEG images, say) fail at their first bytes and are skipped.
    A quick refusal with a plain reason, not the guard: what it cannot measure (a second Flate layer,
    LZW) is bounded by the memory cap of the child that runs pdfium (``recognition.pdf_sandbox``).
    """
    not_images = 0
    for match in _PDF_STREAM_START.finditer(data):
        dictionary = data[data.rfind(b"obj", 0, match.start()):match.start()]
        is_image = _IMAGE_DICTIONARY.search(dictionary) is not None
        inflated = _inflated_size(data, match.end(), max_stream_bytes - (0 if is_image else not_images))
        if inflated is None:
            raise ImageError("image_too_large", "the PDF's streams inflate to more than "
                                                f"{max_stream_bytes} bytes")
        if not is_image:
            not_images += inflated


def _inflated_size(data: bytes, position: int, limit: int) -> int | None:
    """How many bytes the zlib stream at ``position`` inflates to (0 if it is not zlib), None past ``limit``."""
    inflater, inflated = zlib.decompressobj(), 0
    try:
        while not inflater.eof and position < len(data):
            pending = data[position:position + _INFLATE_STEP]
            position += len(pending)
            while pending and not inflater.eof:
                inflated += len(inflater.decompress(pending, _INFLATE_STEP))
                pending = inflater.unconsumed_tail
                if inflated > limit:
                    return None
    except zlib.error:   # not zlib at all (0), or cut short: what it gave so far is what pdfium would get
        return inflated
    return inflated


def count_pages(source, max_pixels: int = DEFAULT_MAX_PAGE_PIXELS, stop_after: int | None = None) -> int:
    """How many pages, each checked against ``max_pixels`` without decoding it; a PDF's streams are
    checked too (``check_pdf_streams``: none may inflate beyond a page of ``max_pixels`` in CMYK and alpha).

    With ``stop_after`` it counts at most ``stop_after + 1``: enough to know a file has too many pages
    without walking the rest. That bound matters: Pillow's multi-frame TIFF seek is quadratic in the
    frame count (40 000 one-pixel frames, 4 MB, take 13 s to count) and a PDF page is loaded to be sized.
    """
    data = _read(source)
    if data[:5] == b"%PDF-":
        check_pdf_streams(data, 5 * max_pixels)
    # a path again, not the bytes just read: the renderer's child opens the file itself
    pages = iter_pages(source if is_path(source) else data, max_pixels=max_pixels, decode=False)
    if stop_after is not None:
        pages = itertools.islice(pages, stop_after + 1)
    return sum(1 for _ in pages)


def iter_pages(source, max_pixels: int = DEFAULT_MAX_PAGE_PIXELS, decode: bool = True) -> Iterator[LoadedPage]:
    """Yield the pages of an image, multi-page TIFF or PDF (its bytes, its path or a binary file), one at a time."""
    source = bytes_or_path(source)
    head = file_head(source)
    if not head:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    if head == b"%PDF-":
        yield from _pdf_pages(source, max_pixels, decode)
        return
    with open_image(source, max_pixels, "page 1") as image:
        yield from _image_pages(image, max_pixels, decode)


def _image_pages(image: Image.Image, max_pixels: int, decode: bool) -> Iterator[LoadedPage]:
    for number, frame in enumerate(_frames(image), start=1):
        check_pixels(*frame.size, max_pixels, f"page {number}")
        if not decode:
            yield LoadedPage(number, np.zeros((0, 0), np.uint8), None)
            continue
        try:
            frame.load()
        except FRAME_ERRORS as exc:
            raise page_error(number, exc) from None
        dpi = frame.info.get("dpi", (None,))[0]
        yield LoadedPage(number, to_grey(upright(frame.copy())), float(dpi) if dpi else None)


# What seeking or loading a page's frame raises: READ_ERRORS, and Pillow's bomb error, which it raises when it
# seeks a later GIF frame larger than its limit (the first frame was sized when the file was opened).
FRAME_ERRORS = (*READ_ERRORS, Image.DecompressionBombError)


def page_error(number: int, exc: Exception) -> ImageError:
    """The ImageError for a frame that could not be sought or loaded (``FRAME_ERRORS``)."""
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError("image_too_large", f"page {number} has more than {Image.MAX_IMAGE_PIXELS} pixels")
    return ImageError("corrupt_image", f"page {number} is truncated or corrupt ({exc})")


def _frames(image: Image.Image) -> Iterator[Image.Image]:
    """The frames of an opened image; a frame that cannot even be sought is a corrupt file, not a crash."""
    frames = ImageSequence.Iterator(image)
    number = 0
    while True:
        number += 1
        try:
            frame = next(frames)
        except StopIteration:
            return
        except FRAME_ERRORS as exc:
            raise page_error(number, exc) from None
        yield frame
        if primary_image_only(image):
            return


def _pdf_pages(source: bytes | str | os.PathLike, max_pixels: int, decode: bool) -> Iterator[LoadedPage]:
    for number, grey in pdf_pages(source, max_pixels, decode):
        yield LoadedPage(number, grey, float(PDF_DPI))
