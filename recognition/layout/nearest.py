"""How far each floating mark is from each line's ink, for all of a page's marks at once.

``lines.assign_marks`` gives a mark to the line owning the nearest ink beside
it. Asked one mark at a time that is a dozen NumPy calls per mark, and a page
has hundreds of marks; here the windows around all marks are cut out of the
label image together (a strided view of it, copied in one call), so the work
is a few calls per group of marks of about the same size.
"""

from __future__ import annotations

import numpy as np

from .components import Components

# The windows of a group of marks hold at most this many pixels together (memory: 4 bytes each).
GROUP_PIXELS = 1 << 21
# "No ink of that line near the mark" in the squared distances.
FAR = np.iinfo(np.int32).max


def squared_gaps_to_lines(comps: Components, line_of: np.ndarray, marks: np.ndarray, n_lines: int,
                          reach: int) -> np.ndarray:
    """(marks x lines): the squared distance from each mark's box to the nearest pixel of each
    line's ink, looked for within ``reach`` pixels of the box both ways; FAR where a line has no
    ink within ``reach`` (in a straight distance: the window's corners are left out).

    ``line_of`` gives each component's line (index < n_lines), or -1 for none. A pixel's distance
    to a box is that to the box's nearest pixel: dx (and dy) is 0 beside (above or below) the box.
    """
    gaps = np.full((len(marks), n_lines), FAR, np.int32)
    if len(marks) == 0:
        return gaps
    boxes = comps.boxes[marks]
    # Every mark gets a square window of one size per group (its box and ``reach`` round it,
    # for the group's largest box); marks sorted by size keep the groups' windows tight.
    sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1) + 2 * reach
    order = np.argsort(sides, kind="stable")
    labels = comps.labels
    height, width = labels.shape
    if height < sides.max() or width < sides.max():   # a page smaller than a window: pad it
        labels = np.pad(labels, ((0, max(0, sides.max() - height)), (0, max(0, sides.max() - width))))
        height, width = labels.shape
    flat_gaps = gaps.reshape(-1)
    for start, end, side in _groups_by_size(sides[order]):
        group = order[start:end]
        box = boxes[group]
        # Windows are moved to lie inside the page; what they then take in beyond ``reach`` is
        # farther than ``reach`` and is left out below with the corners.
        top = np.clip(box[:, 1] - reach, 0, height - side)
        left = np.clip(box[:, 0] - reach, 0, width - side)
        every_window = np.lib.stride_tricks.sliding_window_view(labels, (side, side))
        windows = every_window[top, left].reshape(-1)   # one copy of all the group's windows
        ink = np.flatnonzero(windows)
        line = line_of[windows[ink]]
        ink, line = ink[line >= 0], line[line >= 0]
        mark, pixel = np.divmod(ink, side * side)
        row, col = np.divmod(pixel, side)
        offsets = np.arange(side)
        rows, cols = top[:, None] + offsets, left[:, None] + offsets   # page rows and columns of each window
        dy = np.maximum(0, np.maximum(box[:, 1:2] - rows, rows - (box[:, 3:4] - 1)))
        dx = np.maximum(0, np.maximum(box[:, 0:1] - cols, cols - (box[:, 2:3] - 1)))
        squared = (dy * dy)[mark, row] + (dx * dx)[mark, col]
        near = squared <= reach * reach
        np.minimum.at(flat_gaps, group[mark[near]] * n_lines + line[near], squared[near].astype(np.int32))
    return gaps


def _groups_by_size(sides: np.ndarray):
    """(start, end, side): runs of the (ascending) window sides whose windows, all of the run's
    last and largest side, hold at most GROUP_PIXELS pixels together (a run has one mark at least)."""
    start = 0
    for end in range(1, len(sides) + 1):
        if end == len(sides) or (end + 1 - start) * int(sides[end]) ** 2 > GROUP_PIXELS:
            yield start, end, int(sides[end - 1])
            start = end
