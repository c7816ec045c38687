"""Measure a page's skew and rotate it level."""

from __future__ import annotations

import cv2
import numpy as np

MAX_SKEW_DEGREES = 5.0
# A line's row profile stays sharp within about a degree of level (a 30-px line over a 1500-px page), so a
# half-degree sweep finds the peak (the angles of the 65 shared pages moved by 0.15 degree at most). Fewer than
# 150 000 ink pixels cannot be sampled: a title page of a few big glyphs then peaks at random (4.5 degrees).
COARSE_STEP = 0.5
SAMPLE_PIXELS = 150_000


def estimate_skew(ink: np.ndarray, max_degrees: float = MAX_SKEW_DEGREES) -> float:
    """The page's rotation (degrees, counter-clockwise positive): rotating by minus this levels it.

    Text lines level out when the ink's row profile is sharpest: for each trial
    angle, ink pixel coordinates are projected on the rotated vertical axis and
    the sum of squared differences between neighbouring bins is scored. A coarse
    sweep then a fine one around the best angle. Works on a sample of pixels,
    so a 600-dpi page costs no more than a 300-dpi one.
    """
    # OpenCV lists ink pixels row by row, as np.nonzero does, at a fifth of its cost.
    points = cv2.findNonZero(np.ascontiguousarray(ink, dtype=np.uint8))
    if points is None or len(points) < 100:
        return 0.0
    xs, ys = points.reshape(-1, 2).T
    if len(xs) > SAMPLE_PIXELS:
        pick = np.random.default_rng(0).choice(len(xs), SAMPLE_PIXELS, replace=False)
        xs, ys = xs[pick], ys[pick]
    xs = xs.astype(np.float64) - ink.shape[1] / 2
    ys = ys.astype(np.float64)

    scores: dict[float, int] = {}   # the fine sweep's ends and middle are coarse angles: scored once

    def sharpness(degrees: float) -> int:
        if degrees not in scores:
            a = np.deg2rad(degrees)
            projected = ys * np.cos(a)
            projected += xs * np.sin(a)
            rows = np.rint(projected, out=projected).astype(np.int64)
            steps = np.diff(np.bincount(rows - rows.min()))
            scores[degrees] = int(steps @ steps)   # whole numbers: exact
        return scores[degrees]

    coarse = np.arange(-max_degrees, max_degrees + 1e-9, COARSE_STEP)
    best = max(coarse, key=sharpness)
    fine = np.arange(best - COARSE_STEP, best + COARSE_STEP + 1e-9, 0.05)
    return float(round(max(fine, key=sharpness), 2))


def rotation(shape: tuple[int, int], degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine matrix rotating an image by ``degrees`` onto a canvas that holds all of it."""
    h, w = shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return matrix, (new_w, new_h)


def rotate(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill: int,
           nearest: bool = False) -> np.ndarray:
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
