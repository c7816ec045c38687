"""Line image loading and preprocessing: one function for training and serving.

``open_image`` is the one place any image file is opened (lines, pages, uploads):
it reads the header only, or raises ``ImageError`` with a machine-readable code.
``load_grey`` turns whatever bytes or file a user hands us into an 8-bit grey
array, or raises ``ImageError``. ``preprocess``
turns a grey line into the model's input: ink as 1, paper as 0, blank margins
trimmed, scaled to the model's height with the aspect kept, mirrored so that
the model reads right to left (see ``recognition.text.reading_order``).
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
NORMALISATION = "grey-ink1-paper0-trim-mirror-v1"
# Image formats we read, by file suffix (folders of lines, the CLI, exports).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
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
    ``empty_image``. Use it in a ``with``: opened from a path, the image holds the file open until then (a
    caller's binary file is left open). Its frames are not checked here: see ``picture_count``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty_file", "the file is empty (0 bytes)")
        stream, owned = io.BytesIO(source), True
    elif isinstance(source, (str, os.PathLike)):
        if os.path.getsize(source) == 0:
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


@dataclass(frozen=True)
class LineLimits:
    """What we accept as one text line, so that no upload can make us allocate gigabytes.

    The model's input grows with the line's width after scaling to the model
    height: a 1-pixel-high strip 50,000 pixels wide would become 2.4 million
    columns (gigabytes of activations). ``max_width`` bounds that width (model
    pixels) and ``min_height`` the source height, below which there is no line
    to read. Checked on the image header before decoding and again on the
    trimmed line before scaling.
    """

    max_width: int = 4000
    min_height: int = 8

    def check_size(self, width: int, height: int, model_height: int) -> None:
        if height < self.min_height:
            raise ImageError("not_a_line_image", f"the image is {height} pixels high; a text line needs at least "
                                                 f"{self.min_height}")
        self.check_width(width * model_height / height, f"a {width}x{height} image")

    def check_width(self, scaled_width: float, what: str = "the line") -> None:
        if scaled_width > self.max_width:
            raise ImageError("not_a_line_image",
                             f"{what} is {scaled_width:.0f} pixels wide at the model's height; the limit is "
                             f"{self.max_width} (send one text line per image)")


def load_grey(source, max_pixels: int = DEFAULT_MAX_PIXELS, check_size=None) -> np.ndarray:
    """Decode an image (path, bytes or binary file) to a 2-D uint8 grey array.

    Accepts single-frame PNG, JPEG (a phone's gain map beside it ignored: ``primary_image_only``), TIFF, BMP,
    WebP and GIF (``READ_FORMATS``): 1-bit, palette, grey with or
    without alpha, 16-bit and 32-bit grey, RGB(A), CMYK, EXIF-rotated. Alpha is
    composited over white paper. Rejects empty, truncated, multi-frame and
    over-large images with a clear ``ImageError`` instead of guessing (``open_image``).
    ``check_size(width, height)``, if given, may reject the image (raising
    ``ImageError``) from its header, before any pixel is decoded.
    """
    with open_image(source, max_pixels) as image:
        if check_size is not None:
            check_size(*image.size)
        if has_several_pictures(image):
            raise ImageError("multi_frame_image", "the image has more than one frame; send one line image per frame")
        try:
            image.load()
        except READ_ERRORS as exc:
            raise ImageError("corrupt_image", f"the image data is truncated or corrupt ({exc})") from None
        return to_grey(upright(image))


def to_grey(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return np.clip(array * (255.0 / top), 0, 255).astype(np.uint8)
    if image.mode == "P" or "A" in image.getbands() or image.mode in ("PA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


@dataclass(frozen=True)
class PreprocessConfig:
    """What the model expects; stored in and read back from the model file."""

    height: int = 48
    mirror: bool = True
    normalisation: str = NORMALISATION


def check_grey_array(grey: np.ndarray) -> np.ndarray:
    """A caller's own grey line array, as ``load_grey`` would have made it: 2-D uint8 (0 black .. 255 white).

    Anything else is refused rather than guessed at: a float array in [0, 1] would be taken for a dark
    page (grey levels far below 100), inverted, and read as an empty line without a word of warning.
    """
    if grey.dtype != np.uint8:
        raise ImageError("unsupported_array", f"a grey line array must be uint8 (0 black .. 255 white), not "
                                              f"{grey.dtype}; scale a [0, 1] float image by 255 first")
    if grey.ndim != 2:
        raise ImageError("unsupported_array", f"a grey line array must be 2-D (height x width), not of shape "
                                              f"{grey.shape}")
    if grey.size == 0:
        raise ImageError("empty_image", f"the array has no pixels (shape {grey.shape})")
    return grey


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Grey paper/ink to float ink strength in [0, 1], contrast-stretched.

    The paper level is the median (most of a line is paper) and the ink level a
    high percentile of darkness, so faded scans and dark backgrounds end up on
    the same scale. Light text on dark paper is inverted first.

    An 8-bit line takes its levels from its histogram and maps its pixels
    through a 256-entry table: the same numbers as sorting the pixels (what
    other inputs still do), at a fraction of the cost, which is a fifth of a
    line's reading time otherwise.
    """
    if grey.dtype == np.uint8 and grey.size:
        return _ink_map_8bit(grey)
    grey = grey.astype(np.float32)
    if np.median(grey) < 100:
        grey = 255.0 - grey
    ink = 255.0 - grey
    paper = float(np.median(ink))
    full = float(np.percentile(ink, 99.5))
    return _stretch(ink, paper, full)


def _stretch(ink: np.ndarray, paper: float, full: float) -> np.ndarray:
    span = max(full - paper, 40.0)
    return np.clip((ink - paper) / span, 0.0, 1.0)


def _ink_map_8bit(grey: np.ndarray) -> np.ndarray:
    return cv2.LUT(np.ascontiguousarray(grey), _ink_table_8bit(grey)[0])


def _ink_table_8bit(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """The 256-entry float32 table from an 8-bit line's grey levels to its ink strengths, and whether the
    line is inverted (light ink on dark paper: the table then grows with the grey level, else it falls)."""
    counts = _histogram_8bit(grey)
    levels = np.arange(256, dtype=np.float32)
    inverted = _median(counts) < 100
    if inverted:
        ink_levels = levels  # inverted, then darkness: 255 - (255 - g) = g
    else:
        ink_levels, counts = 255.0 - levels, counts[::-1]  # ink level i has grey 255 - i
    cumulative = counts.cumsum()
    # Histograms of ink by ink level (ascending): order statistics are read off the cumulative counts.
    table = _stretch(np.arange(256, dtype=np.float32), _median(counts, cumulative),
                     _percentile(counts, 99.5, cumulative))
    return table[ink_levels.astype(np.uint8)], inverted


def _histogram_8bit(grey: np.ndarray) -> np.ndarray:
    """Pixels per grey level. OpenCV counts uint8 pixels a few times faster than np.bincount (which
    widens every pixel to 64 bits first); its float32 counts are exact below 2**24 pixels a level."""
    if grey.size < 2**24:
        return cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return np.bincount(grey.ravel(), minlength=256)


def _kth(cumulative: np.ndarray, k: int) -> float:
    """The k-th smallest value (0-based) of the sample whose histogram sums to ``cumulative``."""
    return float(cumulative.searchsorted(k, side="right"))


def _median(counts: np.ndarray, cumulative: np.ndarray | None = None) -> float:
    cumulative = counts.cumsum() if cumulative is None else cumulative
    n = int(cumulative[-1])
    if n % 2:
        return _kth(cumulative, n // 2)
    return (_kth(cumulative, n // 2 - 1) + _kth(cumulative, n // 2)) / 2.0


def _percentile(counts: np.ndarray, q: float, cumulative: np.ndarray) -> float:
    """NumPy's default ('linear') percentile of float32 pixels, interpolated as it does, bit for bit."""
    n = int(cumulative[-1])
    fraction_q = q / 100.0
    index = n * fraction_q + (1.0 + fraction_q * -1.0) - 1.0  # NumPy's virtual index for alpha = beta = 1
    below = min(max(math.floor(index), 0), n - 1)
    fraction = index - math.floor(index)
    low = np.float32(_kth(cumulative, below))
    high = np.float32(_kth(cumulative, min(below + 1, n - 1)))
    if fraction >= 0.5:
        return float(high - (high - low) * (1.0 - fraction))
    return float(low + (high - low) * fraction)


TRIM_THRESHOLD = 0.25  # ink strength that counts as ink when trimming blank margins


def _trim(ink: np.ndarray, threshold: float = TRIM_THRESHOLD) -> np.ndarray:
    rows = np.flatnonzero(ink.max(axis=1) > threshold)
    cols = np.flatnonzero(ink.max(axis=0) > threshold)
    if rows.size == 0 or cols.size == 0:
        return ink
    ink = ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    padded, inside = _with_margin(ink.shape, ink.dtype)
    inside[...] = ink
    return padded


def _with_margin(shape: tuple[int, int], dtype) -> tuple[np.ndarray, np.ndarray]:
    """A zero (paper) array with a margin of a twelfth of the height around ``shape``, and its inside."""
    margin = max(1, shape[0] // 12)
    padded = np.zeros((shape[0] + 2 * margin, shape[1] + 2 * margin), dtype)
    return padded, padded[margin: margin + shape[0], margin: margin + shape[1]]


def _trimmed_ink_8bit(grey: np.ndarray, threshold: float = TRIM_THRESHOLD) -> np.ndarray:
    """``_trim(ink_map(grey))`` for an 8-bit line, bit for bit, mapping only the pixels kept.

    The grey-to-ink table is monotone, so the strongest ink of a row (or column) is the ink of its
    darkest pixel (of its lightest, on an inverted line): the margins are found from per-row and
    per-column grey extremes (cheap uint8 reductions) instead of a float image of the whole line.
    """
    table, inverted = _ink_table_8bit(grey)
    extreme = np.ndarray.max if inverted else np.ndarray.min
    rows = (table[extreme(grey, axis=1)] > threshold).nonzero()[0]
    cols = (table[extreme(grey, axis=0)] > threshold).nonzero()[0]
    if rows.size == 0 or cols.size == 0:
        return cv2.LUT(np.ascontiguousarray(grey), table)
    kept = np.ascontiguousarray(grey[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1])
    padded, inside = _with_margin(kept.shape, np.float32)
    mapped = cv2.LUT(kept, table, dst=inside)  # written into the padded array, no second copy
    if not np.shares_memory(mapped, padded):  # an OpenCV that allocates its own output after all
        inside[...] = mapped
    return padded


def preprocess(grey: np.ndarray, config: PreprocessConfig = PreprocessConfig(),
               limits: LineLimits = LineLimits()) -> np.ndarray:
    """Grey line image (H x W uint8) -> model input (height x W' float32).

    Raises ``ImageError("not_a_line_image")`` beyond ``limits``, before scaling.
    """
    if grey.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {grey.shape}")
    limits.check_size(grey.shape[1], grey.shape[0], config.height)
    ink = _trimmed_ink_8bit(grey) if grey.dtype == np.uint8 and grey.size else _trim(ink_map(grey))
    h, w = ink.shape
    limits.check_width(w * config.height / h, "the line, blank margins trimmed")
    new_w = max(1, int(round(w * config.height / h)))
    interpolation = cv2.INTER_AREA if h > config.height else cv2.INTER_LINEAR
    line = cv2.resize(ink, (new_w, config.height), interpolation=interpolation)
    if config.mirror:
        line = cv2.flip(line, 1)  # about the vertical axis
    return np.ascontiguousarray(line, dtype=np.float32)
