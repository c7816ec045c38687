"""Text lines of a region from its components; floating marks given to lines.

Lines are found from text bodies only: the rows where the bodies' ink peaks
(an Arabic line's densest row is its baseline) are line centres; each body
goes to the nearest. Dots and harakat are given out afterwards, each to the
line owning the nearest body beside it: a mark floating between two lines
goes with the letter it sits on, not with whichever line's box it falls in
(the classic failure on vocalised Arabic, Tesseract issue 657). A cut
between neighbouring lines (seams.py) then revises that, column by column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .components import Components, is_one_of
from .nearest import FAR, squared_gaps_to_lines

# Bodies smaller than this many text heights (on their longer side) do not
# define lines (see find_lines).
SMALL_BODY = 0.6


@dataclass(eq=False)
class LineParts:
    bodies: np.ndarray
    baseline: int                      # row of the line's densest ink
    core: tuple[int, int]              # rows of the letters' bodies (x-height band)
    marks: list[int] = field(default_factory=list)
    # Cuts to the lines above and below (seams.Cut), and the components a cut
    # runs through, of which this line draws only its side.
    cuts_above: list = field(default_factory=list)
    cuts_below: list = field(default_factory=list)
    shared: list[int] = field(default_factory=list)

    def box(self, comps: Components) -> tuple[int, int, int, int]:
        ids = np.concatenate([self.bodies, np.asarray(self.marks, dtype=np.int64)])
        boxes = comps.boxes[ids]
        return int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max())


def _row_profile(comps: Components, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Ink per row of the given components, and the first row it starts at."""
    boxes = comps.boxes[ids]
    x0, y0, x1, y1 = boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()
    ink = is_one_of(comps.labels[y0:y1, x0:x1], ids).view(np.uint8)
    return cv2.reduce(ink, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.float64), int(y0)


def line_pitch(profile: np.ndarray, text_height: float) -> float:
    """Baseline-to-baseline distance: the strongest autocorrelation peak of the row profile."""
    fallback = 1.6 * text_height
    centred = profile - profile.mean()
    if len(centred) < 3 * text_height or not centred.any():
        return fallback
    ac = np.correlate(centred, centred, mode="full")[len(centred) - 1:]
    low, high = int(0.8 * text_height), min(len(ac) - 1, int(4 * text_height))
    if high <= low + 2:
        return fallback
    segment = ac[low:high]
    peaks = [i for i in range(1, len(segment) - 1)
             if segment[i] >= segment[i - 1] and segment[i] > segment[i + 1] and segment[i] > 0]
    if not peaks:
        return fallback
    # The strongest peak: harakat and dots make weaker ones at fractions of the
    # pitch. But a peak at about half the strongest one's lag and nearly as
    # strong is the pitch itself: in a few lines (a footnote block) where every
    # other line is short, twice the pitch can correlate best.
    best = max(peaks, key=lambda i: segment[i])
    for i in peaks:
        if abs(2 * (low + i) - (low + best)) <= 0.15 * (low + best) and segment[i] >= 0.5 * segment[best]:
            return float(low + i)
    return float(low + best)


def _peaks(profile: np.ndarray, radius: float) -> list[int]:
    """Local maxima, strongest first, none within ``radius`` of a stronger one."""
    floor = 0.03 * profile.max()
    candidates = [i for i in range(len(profile))
                  if profile[i] > floor
                  and (i == 0 or profile[i] >= profile[i - 1])
                  and (i == len(profile) - 1 or profile[i] >= profile[i + 1])]
    accepted: list[int] = []
    for i in sorted(candidates, key=lambda i: -profile[i]):
        if all(abs(i - j) > radius for j in accepted):
            accepted.append(i)
    return sorted(accepted)


def _core_band(profile: np.ndarray) -> tuple[int, int, int]:
    peak = int(np.argmax(profile))
    strong = profile >= 0.35 * profile[peak]
    top = peak
    while top > 0 and strong[top - 1]:
        top -= 1
    bottom = peak
    while bottom < len(profile) - 1 and strong[bottom + 1]:
        bottom += 1
    return peak, top, bottom


def find_lines(comps: Components, bodies: np.ndarray,
               orphans: list[int] | None = None) -> tuple[list[LineParts], float]:
    """The lines of one region (top to bottom) and its line pitch.

    A "line" made only of small bodies (a row of stacked harakat over a tightly
    set, heavily vocalised line) is not a line: its bodies go to ``orphans``,
    to be handed out as marks, when a list is given.
    """
    if len(bodies) == 0:
        return [], 1.6 * comps.text_height
    # The region's own text size: footnotes are set smaller than the main
    # text, and measured against the main text their short lines would look
    # like rows of harakat.
    h = region_text_height(comps, bodies)
    if orphans is not None:
        # Small bodies (a shadda or damma drawn large, a stacked pair of
        # harakat, a lone short letter) are not let to define lines: on tight,
        # vocalised lines they sit nearer the line above than their own. Lines
        # come from letter-sized bodies; a small body stays a body only where it
        # lies in a line's letter band, otherwise it is a mark to be given out.
        small = np.maximum(comps.heights(bodies), comps.widths(bodies)) < SMALL_BODY * h
        if small.any() and not small.all():
            lines, pitch = find_lines(comps, bodies[~small], orphans)
            loose = _place_small_bodies(comps, lines, bodies[small], orphans, h)
            if len(loose):   # small print far from the large (a title page): lines of its own
                lines = sorted(lines + find_lines(comps, loose, orphans)[0], key=lambda line: line.baseline)
            return lines, pitch
    profile, top = _row_profile(comps, bodies)
    smooth = cv2.GaussianBlur(profile.reshape(-1, 1), (1, 0), sigmaX=0, sigmaY=max(1.0, h / 6)).ravel()
    pitch = line_pitch(smooth, h)
    centres = np.array(_peaks(smooth, radius=0.6 * pitch)) + top
    nearest = np.abs(comps.centroids[bodies, 1][:, None] - centres[None, :]).argmin(axis=1)
    groups = [bodies[nearest == k] for k in range(len(centres)) if np.any(nearest == k)]
    groups = _merge_overlapping(comps, groups)
    lines = []
    for group in groups:
        if orphans is not None and len(groups) > 1 and comps.heights(group).max() < 0.7 * h:
            orphans.extend(int(b) for b in group)
            continue
        line_profile, line_top = _row_profile(comps, group)
        peak, core_top, core_bottom = _core_band(line_profile)
        lines.append(LineParts(group, line_top + peak, (line_top + core_top, line_top + core_bottom)))
    return sorted(lines, key=lambda line: line.baseline), pitch


def region_text_height(comps: Components, bodies: np.ndarray) -> float:
    """Ink-weighted median height of ``bodies`` (as ``Components.text_height``
    for the whole page): words and letters decide, not their dots."""
    if len(bodies) == 0:
        return comps.text_height
    heights = comps.heights(bodies)
    order = np.argsort(heights)
    weight = np.cumsum(comps.areas[bodies][order])
    return float(heights[order[np.searchsorted(weight, weight[-1] / 2)]])


def _place_small_bodies(comps: Components, lines: list[LineParts], small: np.ndarray,
                        orphans: list[int], h: float) -> np.ndarray:
    """A small body whose box meets a line's letter band (within the line's
    horizontal extent) joins that line; one within a text height of a line
    becomes a mark. The rest, far from every line, are returned."""
    boxes = comps.boxes[small]
    if not lines:
        return small
    bands = np.array([line.core for line in lines])
    extents = np.array([line.box(comps) for line in lines])
    across = (boxes[:, None, 2] > extents[None, :, 0] - h) & (boxes[:, None, 0] < extents[None, :, 2] + h)
    meets = (boxes[:, None, 1] <= bands[None, :, 1]) & (boxes[:, None, 3] > bands[None, :, 0]) & across
    near = (boxes[:, None, 1] < extents[None, :, 3] + h) & (boxes[:, None, 3] > extents[None, :, 1] - h) & across
    owner = np.where(meets.any(axis=1), meets.argmax(axis=1), -1)
    for k, line in enumerate(lines):
        line.bodies = np.concatenate([line.bodies, small[owner == k]])
    mark = (owner < 0) & near.any(axis=1)
    orphans.extend(int(b) for b in small[mark])
    return small[(owner < 0) & ~mark]


ABOVE_WEIGHT = 0.05
BELOW_WEIGHT = 1.0


def _position_cost(cy: np.ndarray, cores: np.ndarray, h: float) -> np.ndarray:
    """How far a mark's centre row lies outside each line's x-height band: over it cheaply (a line's
    fathas and shaddas), under it at full cost."""
    above = np.maximum(0.0, cores[..., 0] - cy)
    below = np.maximum(0.0, cy - cores[..., 1])
    return ABOVE_WEIGHT * above + BELOW_WEIGHT * below


def _merge_overlapping(comps: Components, groups: list[np.ndarray]) -> list[np.ndarray]:
    """Join line candidates that are one line split in two (a large heading,
    a line whose tall letters made a second peak): their boxes overlap by more
    than half the lower one's height. Neighbouring lines, even touching, overlap
    by much less, since each body went whole to one of them."""
    def extent(group):
        boxes = comps.boxes[group]
        return boxes[:, 1].min(), boxes[:, 3].max()

    groups = sorted(groups, key=lambda g: np.median(comps.centroids[g, 1]))
    merged: list[np.ndarray] = []
    for group in groups:
        if merged:
            (a0, a1), (b0, b1) = extent(merged[-1]), extent(group)
            overlap = min(a1, b1) - max(a0, b0)
            if overlap > 0.5 * min(a1 - a0, b1 - b0):
                merged[-1] = np.concatenate([merged[-1], group])
                continue
        merged.append(group)
    return merged


def assign_marks(comps: Components, lines: list[LineParts], marks: np.ndarray) -> None:
    """Give each mark to the line owning the nearest ink beside it.

    Distance is from the mark's box to the nearest pixel of each line's
    bodies within one text height (so a fatha goes to the letter just under
    it, not to the box of a word of the line above whose descender happens to
    reach down beside it), plus a quarter of the distance to the line's
    x-height band as a tie-break. Marks given out make the reach of their
    line: a mark stacked over another (a fatha over a shadda) follows it, in
    a second round. Marks with no line within one text height are speckle
    and are dropped.
    """
    if not lines or len(marks) == 0:
        return
    h = comps.text_height
    reach = int(np.ceil(h))
    owner = np.full(len(comps.boxes), -1, dtype=np.int64)
    for k, line in enumerate(lines):
        owner[line.bodies] = k
    cores = np.array([line.core for line in lines], dtype=np.float64)
    left = np.asarray(marks, dtype=np.int64)
    for _ in range(2):
        squared = squared_gaps_to_lines(comps, owner, left, len(lines), reach)
        nearest = np.where(squared < FAR, np.sqrt(squared), np.inf)
        score = nearest + _position_cost(comps.centroids[left, 1][:, None], cores[None], h)
        best = score.argmin(axis=1)   # ties: the first line
        given = np.where(score[np.arange(len(left)), best] <= h, best, -1)
        for mark, k in zip(left, given):
            if k >= 0:
                lines[k].marks.append(int(mark))
                owner[mark] = k
        left = left[given < 0]
        if len(left) == 0:
            break
