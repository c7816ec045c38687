"""On-the-fly augmentation of preprocessed lines (ink 1, paper 0).

Cheap per-line operations that imitate what differs between scans of
different books: stroke weight, letter width, contrast, noise, blur and a
little vertical jitter. Rendering-time degradation lives in ``synth``.
"""

from __future__ import annotations

import cv2
import numpy as np


def augment_line(line: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = line.shape
    r = rng.random
    if r() < 0.5:  # typeface width
        new_w = max(8, int(w * rng.uniform(0.8, 1.2)))
        line = cv2.resize(line, (new_w, h), interpolation=cv2.INTER_LINEAR)
    if r() < 0.3:  # stroke weight
        kernel = np.ones((2, 2), np.uint8)
        line = cv2.dilate(line, kernel) if r() < 0.5 else cv2.erode(line, kernel)
    if r() < 0.3:  # vertical jitter / scale
        dy = rng.uniform(-0.06, 0.06) * h
        scale = rng.uniform(0.9, 1.05)
        m = np.array([[1, 0, 0], [0, scale, dy + h * (1 - scale) / 2]], np.float32)
        line = cv2.warpAffine(line, m, (line.shape[1], h), borderValue=0)
    if r() < 0.3:
        line = cv2.GaussianBlur(line, (0, 0), rng.uniform(0.3, 1.0))
    if r() < 0.5:  # faded or heavy ink
        line = np.clip(line * rng.uniform(0.6, 1.3), 0, 1) ** rng.uniform(0.7, 1.4)
    if r() < 0.4:
        line = line + rng.normal(0, rng.uniform(0.02, 0.1), line.shape)
    return np.clip(line, 0, 1).astype(np.float32)
