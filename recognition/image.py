"""Line image loading and preprocessing: one function for training and serving.

Files are opened by ``recognition.image_file.open_image`` (the one place any image is opened).
``load_grey`` turns whatever bytes or file a user hands us into an 8-bit grey
array, or raises ``ImageError``. ``preprocess``
turns a grey line into the model's input: ink as 1, paper as 0, blank margins
trimmed, scaled to the model's height with the aspect kept, mirrored so that
the model reads right to left (see ``recognition.text.reading_order``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .image_file import READ_ERRORS, ImageError, has_several_pictures, open_image, upright

DEFAULT_MAX_PIXELS = 40_000_000
NORMALISATION = "grey-ink1-paper0-trim-mirror-v1"
# Image formats we read, by file suffix (folders of lines, the CLI, exports).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")


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
