"""Grey page -> ink mask, robust to uneven paper, faded ink and dark pages."""

from __future__ import annotations

import cv2
import numpy as np

# Ink must be at least this much darker than the paper around it (grey
# levels after flattening): a blank page's paper grain never reaches it.
MIN_CONTRAST = 60


def flatten(grey: np.ndarray) -> np.ndarray:
    """Divide out the paper's shading (scanner falloff, yellowing, gutter shadow).

    The paper level is estimated on a 1/8-scale copy by a grey-level closing
    (a local maximum, wider than any stroke) and divided out, so paper becomes
    255 everywhere and ink keeps its contrast. Light text on dark paper is
    inverted first.
    """
    grey = grey if grey.dtype == np.uint8 else np.clip(grey, 0, 255).astype(np.uint8)
    if np.median(grey[::4, ::4]) < 100:   # a sample decides: the page's median is its paper or its ink
        grey = cv2.bitwise_not(grey)
    h, w = grey.shape
    small = cv2.resize(grey, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    paper = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    paper = np.maximum(cv2.medianBlur(paper, 5), 1)
    paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.divide(grey, paper, scale=255.0)   # 8-bit in and out, saturating: one pass over the page


def binarise(flat: np.ndarray) -> np.ndarray:
    """Flattened grey -> uint8 mask (1 = ink): Otsu, but never fainter than MIN_CONTRAST."""
    threshold, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = min(threshold, 255 - MIN_CONTRAST)
    # flat < threshold, i.e. flat <= ceil(threshold) - 1 on 8-bit levels, in one OpenCV pass (NumPy takes two).
    return cv2.threshold(flat, np.ceil(threshold) - 1, 1, cv2.THRESH_BINARY_INV)[1]
