"""Cutting a letter from a mark of the neighbouring line that touches it.

On tight, vocalised pages a haraka or dot of one line is often drawn into the
descender of the line above (or a kasra into the top of a tall letter of the
line below): one connected component holding ink of two lines. Such a
component went whole to one line, so the other line's mark was lost from its
crop and drawn into its neighbour's.

The cut is at the component's thinnest row (a neck: where the two glyphs
meet) in the part that reaches out of its own line, towards the neighbour,
and only where what lies beyond the neck is the size of a mark. The piece cut
off becomes a mark of its own and is given out like any other (it may well go
back to the line it came from: then nothing is lost).
"""

from __future__ import annotations

import numpy as np

from .components import Components

# A neck is at most this share of a text height wide (in ink pixels on its row).
NECK = 0.12
# What lies beyond the neck is at most this many text heights tall: a mark or a
# stacked pair of marks, never a descender or the stem of a tall letter.
PIECE_HEIGHT = 0.5


def cut_touching_marks(comps: Components, lines) -> list[int]:
    """Cut marks of a neighbouring line off the bodies of ``lines`` (sorted top
    to bottom); returns the labels of the pieces cut off, to be given out as marks.

    ``comps`` is updated in place: the pieces get new labels (and boxes, areas,
    centroids), the bodies keep what is left of them.
    """
    h = comps.text_height
    pieces: list[tuple[int, np.ndarray, np.ndarray]] = []
    for k, line in enumerate(lines):
        for body in line.bodies:
            for towards in (+1, -1):
                if not 0 <= k + towards < len(lines):
                    continue
                cut = _neck_cut(comps, int(body), line, towards, h)
                if cut is not None:
                    pieces.append((int(body), *cut))
    if not pieces:
        return []
    return _relabel(comps, pieces)


def _neck_cut(comps: Components, body: int, line, towards: int, h: float):
    """The pixels (ys, xs) beyond the thinnest row of ``body`` on the side of
    the neighbouring line, or None when there is no neck with a mark beyond it."""
    x0, y0, x1, y1 = comps.boxes[body]
    # Only the part well outside the line's own letter band can be a neighbour's mark.
    if towards > 0:
        start = int(line.baseline + 0.25 * h)
        if y1 <= start + 2:
            return None
        window = comps.labels[start:y1, x0:x1] == body
        offset = start
    else:
        end = int(line.core[0] - 0.25 * h)
        if y0 >= end - 2:
            return None
        window = comps.labels[y0:end, x0:x1] == body
        offset = y0
    counts = window.sum(axis=1)
    rows = np.arange(len(counts))
    # Rows whose far side is mark-sized: within PIECE_HEIGHT of the far end.
    if towards > 0:
        last = int(np.nonzero(counts)[0].max())
        candidates = rows[(rows < last) & (last - rows <= PIECE_HEIGHT * h) & (counts > 0)]
    else:
        first = int(np.nonzero(counts)[0].min())
        candidates = rows[(rows > first) & (rows - first <= PIECE_HEIGHT * h) & (counts > 0)]
    if len(candidates) == 0:
        return None
    neck = candidates[np.argmin(counts[candidates])]
    if counts[neck] > max(2, NECK * h):
        return None
    # The neck must be narrower than what it joins: a stroke of even width
    # (a descender's tail) has no neck, a mark pressed onto it has.
    beyond = counts[neck + 1:] if towards > 0 else counts[:neck]
    if len(beyond) == 0 or beyond.max() < 2 * counts[neck]:
        return None
    ys, xs = np.nonzero(window[neck + 1:] if towards > 0 else window[:neck])
    if towards > 0:
        ys = ys + offset + neck + 1
    else:
        ys = ys + offset
    if len(ys) < 6:
        return None
    return ys, xs + x0


def _relabel(comps: Components, pieces) -> list[int]:
    first = len(comps.boxes)
    new_boxes, new_areas, new_centroids, labels = [], [], [], []
    touched = set()
    for i, (body, ys, xs) in enumerate(pieces):
        label = first + i
        comps.labels[ys, xs] = label
        new_boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        new_areas.append(len(ys))
        new_centroids.append((xs.mean(), ys.mean()))
        labels.append(label)
        touched.add(body)
    comps.boxes = np.concatenate([comps.boxes, np.asarray(new_boxes, dtype=comps.boxes.dtype)])
    comps.areas = np.concatenate([comps.areas, np.asarray(new_areas, dtype=comps.areas.dtype)])
    comps.centroids = np.concatenate([comps.centroids, np.asarray(new_centroids, dtype=comps.centroids.dtype)])
    for body in touched:   # what is left of it
        x0, y0, x1, y1 = comps.boxes[body]
        ys, xs = np.nonzero(comps.labels[y0:y1, x0:x1] == body)
        comps.boxes[body] = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
        comps.areas[body] = len(ys)
        comps.centroids[body] = (x0 + xs.mean(), y0 + ys.mean())
    return labels
