"""Opening image files: the one place any image an input gives us is opened (lines, pages, uploads, jobs).

``open_image`` reads the header only, as one of ``READ_FORMATS``, and turns every way Pillow can fail on a
crafted or damaged file into an ``ImageError`` with a machine-readable code; ``has_several_pictures`` and
``picture_count`` look at its frames, ``upright`` applies its orientation. Decoding pixels and preparing a line
for the model are ``recognition.image``'s.
"""

from __future__ import annotations

import io
import os
import struct
import warnings

from PIL import Image, UnidentifiedImageError

# The same formats as Pillow names them: the only ones any input is decoded as. Pillow opens dozens more by
# their content, whatever the file is called; among them EPS, which it hands to Ghostscript (an interpreter,
# run on the uploaded file where it is installed), and rarely used decoders, where its CVEs cluster.
READ_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")


def primary_image_only(image: Image.Image) -> bool:
    """Whether only the image's first frame is the picture sent: a JPEG with a Multi-Picture (MPF) segment, which
    Pillow opens as format MPO, carries further images that are not more lines or pages: the HDR gain map of an
    Ultra HDR photo (Android phones write one by default), a depth map or a preview. Read frame by frame, a
    phone's photo of a line was refused as multi-frame and its photo of a page read as two pages."""
    return image.format == "MPO"


class ImageError(ValueError):
    """An input that cannot be read as a line image; ``code`` is for APIs."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# What Pillow raises, besides UnidentifiedImageError and its decompression-bomb errors, on a file that it took
# for one of READ_FORMATS and cannot parse: its plugins read a crafted header or frame directory with struct,
# seeks, lookups and arithmetic and raise whatever trips (OSError for a PNG cut in its IHDR, TypeError for a TIFF
# frame directory cut short, EOFError, SyntaxError, struct.error, ...). It reads the first frame's header when
# the file is opened, the others' when they are sought, and the pixels when they are loaded.
READ_ERRORS = (OSError, EOFError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error,
               ZeroDivisionError)

# How each of READ_FORMATS starts (Pillow's own tests, as far as ours go; WebP is RIFF....WEBP): a file that
# starts so and still cannot be opened is a damaged image, corrupt_image, not some other kind of file.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
               (b"MM\x00+", "TIFF"), (b"MM*\x00", "TIFF"), (b"II\x00*", "TIFF"))


# The file suffix a stored image gets, by the format it was read as (a JPEG with a Multi-Picture segment is MPO).
FORMAT_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp",
                   "GIF": ".gif"}


def claimed_format(head: bytes) -> str | None:
    """The format of READ_FORMATS that a file's first bytes announce, if any."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)


def check_pixels(width: int, height: int, max_pixels: int, what: str = "the image") -> None:
    """The one wording of "too many pixels", for an image and for a page of a file alike."""
    if width * height > max_pixels:
        raise ImageError("image_too_large",
                         f"{what} is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")


def open_image(source, max_pixels: int | None = None, what: str = "the image",
               check_first_frame: bool = True) -> Image.Image:
    """An image file (its bytes, its path or a binary file) opened lazily: its header read, not a pixel
    decoded. Every image any input gives us is opened here: as one of ``READ_FORMATS`` only, and every failure
    an ``ImageError`` (``READ_ERRORS``): ``empty_file``; ``not_an_image`` (the file is none of our formats);
    ``corrupt_image`` (it starts as one, but its header cannot be read); ``image_too_large`` (beyond
    ``max_pixels``, said of ``what``, or Pillow's bomb limit: ``_bomb_limit``; a caller after a later frame
    passes ``check_first_frame=False`` and checks that frame itself);
    ``empty_image``; ``unreadable_file`` (a path that is gone or cannot be opened). Use it in a ``with``:
    opened from a path, the image holds the file open until then (a caller's binary file is left open). Its
    frames are not checked here: see ``picture_count``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty_file", "the file is empty (0 bytes)")
        stream, owned = io.BytesIO(source), True
    elif isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError as exc:   # gone (or never there) since it was listed: that file's error, not the caller's
            raise ImageError("unreadable_file", f"{os.fspath(source)} cannot be read: {exc.strerror or exc}") from None
        if size == 0:
            raise ImageError("empty_file", f"{os.fspath(source)} is empty (0 bytes)")
        stream, owned = source, True   # Pillow opens the file, and closes it with the image
    else:
        stream, owned = source, False
    try:
        with warnings.catch_warnings():
            # the caller's limit, where it sets one, is the limit below Pillow's hard one (see _bomb_limit)
            warnings.simplefilter("error" if max_pixels is None else "ignore", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=READ_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's message names its own limit; the image's size is lost with it
        beyond = Image.MAX_IMAGE_PIXELS * (2 if isinstance(exc, Image.DecompressionBombError) else 1)
        raise ImageError("image_too_large", f"the image has more than {beyond} pixels; the limit is "
                                            f"{_bomb_limit(max_pixels)}") from None
    except UnidentifiedImageError:
        head = _head(source)
        if not head:   # a caller's empty binary file
            raise ImageError("empty_file", "the file is empty (0 bytes)") from None
        claimed = claimed_format(head)
        if claimed is None:
            raise ImageError("not_an_image", "the file is not an image in a format we read (PNG, JPEG, TIFF, BMP, "
                                             "WebP or GIF)") from None
        raise ImageError("corrupt_image", f"the file starts as a {claimed} image, but its header is truncated or "
                                          "corrupt") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:   # the path, not the image in it
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the file"
        raise ImageError("unreadable_file", f"{name} cannot be read: {exc.strerror or exc}") from None
    except READ_ERRORS as exc:
        raise ImageError("corrupt_image", f"the image's header is truncated or corrupt ({exc})") from None
    try:
        width, height = image.size
        if max_pixels is not None and check_first_frame:
            check_pixels(width, height, max_pixels, what)
        if width == 0 or height == 0:
            raise ImageError("empty_image", "the image has no pixels")
    except ImageError:
        if owned:
            image.close()
        raise
    return image


def _bomb_limit(max_pixels: int | None) -> int:
    """The most pixels ``open_image`` lets through. Pillow warns past ``Image.MAX_IMAGE_PIXELS`` (89 M) and
    refuses past twice that. Without a limit of the caller's, its warning is taken as the refusal; a caller's
    own limit decides below its refusal: a deployment may allow pages past 89 M pixels (OCR_MAX_PAGE_PIXELS),
    and the page loaders read such pages before they went through here."""
    if max_pixels is None:
        return Image.MAX_IMAGE_PIXELS
    return min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)


def _head(source, size: int = 16) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:size])
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return handle.read(size)
    position = source.tell()
    try:
        source.seek(0)
        return source.read(size)
    finally:
        source.seek(position)


# EXIF orientation -> the transposition that sets the picture upright (as ImageOps.exif_transpose maps them)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def upright(image: Image.Image) -> Image.Image:
    """The picture turned as its EXIF (or XMP) orientation says. EXIF that cannot be parsed is taken as absent,
    the picture read as stored, as browsers show it and as Pillow's JPEG reader takes it when it opens the file:
    ``ImageOps.exif_transpose`` parses it again (and rewrites it) and raised SyntaxError or struct.error on a
    broken EXIF header out of the line and page loaders."""
    try:
        method = _UPRIGHT.get(image.getexif().get(0x0112))
    except READ_ERRORS:
        method = None
    return image.transpose(method) if method is not None else image


def picture_count(image: Image.Image) -> int:
    """How many pictures (lines, pages) an opened image holds: its frames, but one for a JPEG whatever its
    Multi-Picture segment adds (``primary_image_only``). Counting seeks every frame's directory: one that is
    truncated or corrupt is a ``corrupt_image``."""
    if primary_image_only(image):
        return 1
    try:
        return getattr(image, "n_frames", 1)
    except READ_ERRORS as exc:
        raise ImageError("corrupt_image", f"a frame of the image is truncated or corrupt ({exc})") from None


def has_several_pictures(image: Image.Image) -> bool:
    """Whether an opened image holds more than one picture, reading no frame directory past the second:
    counting them (``picture_count``) walks every one, and a 10 MB TIFF of tiny frames holds tens of thousands
    (seconds of a worker, per request, to refuse one line). A second frame that cannot be read is a
    ``corrupt_image``, as counting found it."""
    if primary_image_only(image):
        return False
    try:
        if not getattr(image, "is_animated", False):   # from the header or the first directory's next offset
            return False
        image.seek(1)
        image.seek(0)
    except EOFError:
        return False
    except READ_ERRORS as exc:
        raise ImageError("corrupt_image", f"a frame of the image is truncated or corrupt ({exc})") from None
    return True
