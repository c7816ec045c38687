"""Which text bodies belong to which part of the page.

The main text block is the widest band of columns that most of the page's ink
covers; bodies whose horizontal run (words joined across word gaps) lies
mostly outside it are marginalia (notes, or line numbers when small). A rule
near the top with little text above it separates the running header; a rule
lower down with text on both sides separates the footnotes. Books that print
no rules are read from other signs: a running head is a top line set apart
that carries the folio at one end; footnotes are the bottom lines set in a
smaller size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .components import Components, label_components
from .lines import LineParts, region_text_height


@dataclass
class BodyGroups:
    header: np.ndarray
    main: np.ndarray
    footnotes: np.ndarray
    left_margin: np.ndarray
    right_margin: np.ndarray
    main_columns: tuple[int, int]
    folio: np.ndarray            # a page number printed alone under everything else


def _rule_rows(comps: Components) -> tuple[float | None, float | None]:
    """(header rule row, footnote rule row), either None when absent."""
    areas = comps.areas[comps.bodies]
    centre_y = comps.centroids[comps.bodies, 1]
    total = float(areas.sum())
    page_height = comps.labels.shape[0]
    header_rule = footnote_rule = None
    for rule in sorted(comps.rules, key=lambda r: comps.centroids[r, 1]):
        y = comps.centroids[rule, 1]
        above = float(areas[centre_y < y].sum()) / total
        if header_rule is None and footnote_rule is None and 0 < above < 0.15:
            header_rule = y
        elif footnote_rule is None and y > 0.4 * page_height and 0.5 <= above < 1.0:
            footnote_rule = y
    return header_rule, footnote_rule


def _runs_of_words(comps: Components, bodies: np.ndarray) -> np.ndarray:
    """For each body, the (x0, x1) of the horizontal run it belongs to: bodies
    joined across gaps narrower than 1.5 text heights (word gaps, not the
    white channel between the text block and its margin). Measured at half
    resolution (a gap of 1.5 text heights is 20 px or more there): a quarter of
    the work of a full-page labelling."""
    h = comps.text_height
    is_body = np.zeros(len(comps.boxes), np.uint8)
    is_body[bodies] = 1
    mask = np.take(is_body, comps.labels)   # a table look-up per pixel: np.isin sorts the whole page's labels
    # Each half-resolution pixel is body ink if any of its four is: the maximum over a 2x2 block
    # anchored at its top-left pixel, read at every other row and column (past the page's edge: paper).
    half_mask = np.ascontiguousarray(cv2.dilate(mask, np.ones((2, 2), np.uint8), anchor=(0, 0))[::2, ::2])
    # The full-resolution reach, halved, less the half pixel by which pooling may widen ink on each side
    # (one pixel more bridged a 36-px gap between a margin number and the text block).
    reach = max(3, int(round(1.5 * h)) // 2 - 1)
    joined = cv2.dilate(half_mask, np.ones((1, reach), np.uint8))
    _, runs, stats, _ = label_components(joined)
    # A body is connected, and stays so halved and dilated: all of it lies in one run, that of any one
    # of its pixels.
    ys, xs = comps.first_pixels(bodies)
    run = runs[ys // 2, xs // 2]
    half = reach // 2
    return 2 * np.stack([stats[run, 0] + half, stats[run, 0] + stats[run, 2] - half], axis=1)


def _main_columns(comps: Components, bodies: np.ndarray) -> tuple[int, int]:
    """The widest band of columns most lines of text cross."""
    h = comps.text_height
    width = comps.labels.shape[1]
    coverage = np.zeros(width + 1)
    boxes = comps.boxes[bodies]
    np.add.at(coverage, boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.add.at(coverage, boxes[:, 2], -(boxes[:, 3] - boxes[:, 1]))
    coverage = np.cumsum(coverage)[:width]
    k = max(1, int(2 * h))
    coverage = np.convolve(coverage, np.ones(k) / k, mode="same")
    covered = coverage >= 0.3 * np.percentile(coverage[coverage > 0], 95)
    runs, start = [], None
    for x, on in enumerate(np.append(covered, False)):
        if on and start is None:
            start = x
        elif not on and start is not None:
            if runs and start - runs[-1][1] < 2 * h:
                runs[-1] = (runs[-1][0], x)
            else:
                runs.append((start, x))
            start = None
    if not runs:
        return 0, width
    return max(runs, key=lambda r: coverage[r[0]:r[1]].sum())


def group_bodies(comps: Components) -> BodyGroups:
    bodies = comps.bodies
    cy = comps.centroids[bodies, 1]
    header_rule, footnote_rule = _rule_rows(comps)
    in_header = cy < header_rule if header_rule is not None else np.zeros(len(bodies), bool)
    below_rule = cy > footnote_rule if footnote_rule is not None else np.zeros(len(bodies), bool)
    x0, x1 = _main_columns(comps, bodies[~in_header])
    runs = _runs_of_words(comps, bodies)
    inside = np.clip(np.minimum(runs[:, 1], x1) - np.maximum(runs[:, 0], x0), 0, None)
    marginal = (inside < 0.5 * np.maximum(runs[:, 1] - runs[:, 0], 1)) & ~in_header
    centre_x = comps.centroids[bodies, 0]
    folio = _bottom_folio(comps, bodies, ~in_header & ~marginal)
    return BodyGroups(
        header=bodies[in_header],
        main=bodies[~in_header & ~below_rule & ~marginal & ~folio],
        footnotes=bodies[below_rule & ~marginal & ~folio],
        left_margin=bodies[marginal & (centre_x < x0)],
        right_margin=bodies[marginal & (centre_x >= x0)],
        main_columns=(int(x0), int(x1)),
        folio=bodies[folio],
    )


# A folio is at most a few glyphs (digits, perhaps brackets or dashes), no wider than this many text heights,
# with at least this many text heights of blank paper between it and the lowest text above it.
FOLIO_MAX_BODIES = 5
FOLIO_MAX_WIDTH = 4.0
FOLIO_MIN_GAP = 2.0


def _bottom_folio(comps: Components, bodies: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Which of ``bodies`` make the page number printed alone at the foot of the page (a mask).

    Set apart before lines are found: a few small digits under the last line would otherwise be taken into
    that line (or into the last footnote) as if they were its dots."""
    found = np.zeros(len(bodies), bool)
    index = np.flatnonzero(candidates)
    if len(index) <= FOLIO_MAX_BODIES:
        return found
    boxes = comps.boxes[bodies[index]]
    order = np.argsort(-boxes[:, 1])                 # lowest top first
    h = comps.text_height
    for count in range(1, FOLIO_MAX_BODIES + 1):
        low, rest = boxes[order[:count]], boxes[order[count:]]
        if low[:, 2].max() - low[:, 0].min() > FOLIO_MAX_WIDTH * h:
            break
        if low[:, 1].min() - rest[:, 3].max() >= FOLIO_MIN_GAP * h:
            found[index[order[:count]]] = True
            break
    return found


# A running head is set no bigger than the text (a chapter heading, also centred and set apart, is bigger)
# and carries a title of some words: a lone heading word such as "باب" over a chapter's title (Bayhaqi) is
# no wider than 2.3 text heights.
HEAD_MAX_SIZE = 1.05
HEAD_MIN_WIDTH = 5.0


def running_header_without_rule(comps: Components, lines: list[LineParts], pitch: float,
                                folio_at_foot: bool = False) -> bool:
    """Whether the top line of the text column is a running head printed with no
    rule under it: set apart from the next line by more than a line's pitch, and
    either carrying the folio (a piece no wider than a few digits) at one end, far
    from the title (no line of text has such a gap), or, on a page whose folio is
    printed at the foot, a title of some words set no bigger than the text."""
    if len(lines) < 3 or lines[1].baseline - lines[0].baseline < 1.25 * pitch:
        return False
    h = comps.text_height
    if folio_at_foot:
        x0, _, x1, _ = lines[0].box(comps)
        text_size = np.median([region_text_height(comps, line.bodies) for line in lines[1:]])
        return bool(x1 - x0 >= HEAD_MIN_WIDTH * h
                    and region_text_height(comps, lines[0].bodies) <= HEAD_MAX_SIZE * text_size)
    boxes = comps.boxes[lines[0].bodies]
    boxes = boxes[np.argsort(boxes[:, 0])]
    reach = np.maximum.accumulate(boxes[:, 2])
    breaks = np.flatnonzero(boxes[1:, 0] - reach[:-1] > 3 * h)
    if len(breaks) == 0:
        return False
    first_piece = reach[breaks[0]] - boxes[0, 0]
    last_piece = reach[-1] - boxes[breaks[-1] + 1, 0]
    return bool(min(first_piece, last_piece) <= 2.5 * h)


# Footnotes are set smaller than the main text (commonly at 0.75-0.8 of its
# size) and tighter: their line pitch is at most this fraction of the main text's.
FOOTNOTE_PITCH = 0.87
# ... and their letters are at least this much smaller (a looser test: a
# line's measured size varies with its words and harakat).
FOOTNOTE_SIZE = 0.9


def footnotes_without_rule(comps: Components, lines: list[LineParts], right_edge: float) -> int | None:
    """Where the footnotes start in a text column (top to bottom) that has no
    footnote rule: the index of the first of at least two bottom lines set
    tighter and smaller than the lines above them, most of them flush with the
    text block's ``right_edge``, or None. Line pitch decides
    (baselines are measured well; sizes vary with the words): the split that
    leaves the fewest pitches on the wrong side of the one between the two
    wins, then the larger pitch ratio, and few are allowed."""
    if len(lines) < 4:
        return None
    sizes = np.array([region_text_height(comps, line.bodies) for line in lines])
    pitches = np.diff([line.baseline for line in lines]).astype(np.float64)
    # Footnotes start at the text block's right edge (a title page's small print is centred). The block's edge,
    # not the lines' median: on a title page of four lines, two centred ones at the foot made the median.
    rights = np.array([line.box(comps)[2] for line in lines])
    flush = np.abs(rights - right_edge) <= comps.text_height
    best, best_key = None, None
    for k in range(2, len(lines) - 1):
        above, below = pitches[:k - 1], pitches[k:]   # pitch k-1 spans main text to footnotes
        # Footnotes hang under body text, itself flush with the block's edge (two lines at least): under a
        # centred chapter heading (Bayhaqi's chapter openings) the whole body looked tighter and smaller.
        if np.sum(flush[:k]) < 2:
            continue
        if np.median(below) > FOOTNOTE_PITCH * np.median(above):
            continue
        if np.median(sizes[k:]) > FOOTNOTE_SIZE * np.median(sizes[:k]):
            continue
        middle = (np.median(above) + np.median(below)) / 2
        misfits = int(np.sum(above <= middle) + np.sum(below >= middle))
        if misfits > 0.25 * len(below) or np.mean(flush[k:]) < 0.75:
            continue
        key = (misfits, np.median(below) / np.median(above))
        if best_key is None or key < best_key:
            best, best_key = k, key
    return best
