"""The layout pipeline: page image -> PageLayout (see the package docstring)."""

from __future__ import annotations

import cv2
import numpy as np

from .binarise import binarise, flatten
from .components import Components, find_components, is_one_of
from .deskew import estimate_skew, rotate, rotation
from .lines import LineParts, assign_marks, find_lines
from .model import READING_ORDER, LayoutLine, LayoutRegion, PageLayout, RegionKind
from .regions import footnotes_without_rule, group_bodies, running_header_without_rule
from .seams import cut_lines, line_pixels_and_side

# Pages are analysed at most this many pixels on their long side: a 600-dpi
# scan is halved (about 320 dpi for a book page), which keeps every dot and
# haraka and quarters the work.
MAX_ANALYSIS_SIDE = 3000


def analyse_layout(grey: np.ndarray, max_side: int = MAX_ANALYSIS_SIDE) -> PageLayout:
    """A grey page (H x W uint8) -> regions of lines in reading order."""
    if grey.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {grey.shape}")
    page_h, page_w = grey.shape
    scale = min(1.0, max_side / max(page_h, page_w))
    work = grey if scale == 1.0 else cv2.resize(
        grey, (max(1, round(page_w * scale)), max(1, round(page_h * scale))), interpolation=cv2.INTER_AREA)
    flat = flatten(work)
    angle = estimate_skew(binarise(flat))
    matrix, size = rotation(flat.shape, -angle)   # turn it back level
    # A level page is its own rotation (OpenCV's identity warp copies every pixel): skip the warp.
    level = flat if angle == 0 else rotate(flat, matrix, size, fill=255)
    comps = find_components(binarise(level))
    to_page = _PageMapping(cv2.invertAffineTransform(matrix), scale, (page_w, page_h))
    if len(comps.bodies) == 0:
        return PageLayout(page_w, page_h, angle, [])

    groups = group_bodies(comps)
    orphans: list[int] = []
    main, pitch = find_lines(comps, groups.main, orphans)
    header = find_lines(comps, groups.header, orphans)[0]
    if not header and running_header_without_rule(comps, main, pitch, folio_at_foot=len(groups.folio) > 0):
        header, main = main[:1], main[1:]
    footnotes = find_lines(comps, groups.footnotes, orphans)[0]
    start = None if footnotes else footnotes_without_rule(comps, main, groups.main_columns[1])
    if start is not None:
        # Found again at their own size and pitch: they are set tighter than the main text.
        footnotes = find_lines(comps, np.concatenate([line.bodies for line in main[start:]]), orphans)[0]
        main = main[:start]
    parts: dict[RegionKind, list[list[LineParts]]] = {kind: [] for kind in READING_ORDER}
    parts[RegionKind.HEADER] = _nonempty([header])
    parts[RegionKind.MAIN] = _split_blocks(main, pitch)
    parts[RegionKind.FOOTNOTE] = _nonempty([footnotes])
    parts[RegionKind.PAGE_NUMBER] = _nonempty([find_lines(comps, groups.folio, orphans)[0]])
    for margin in (groups.right_margin, groups.left_margin):
        side, _ = find_lines(comps, margin)
        numbers = [line for line in side if _is_number(comps, line)]
        notes = [line for line in side if not _is_number(comps, line)]
        parts[RegionKind.MARGINAL_NUMBER] += _nonempty([numbers])
        parts[RegionKind.MARGINAL_NOTE] += _split_blocks(notes, pitch)
    _move_folios(comps, parts, pitch)
    everything = [line for blocks in parts.values() for block in blocks for line in block]
    assign_marks(comps, everything, np.concatenate([comps.marks, np.asarray(orphans, dtype=np.int64)]))
    cut_lines(comps, everything)

    regions = []
    for kind in READING_ORDER:
        blocks = sorted(parts[kind], key=lambda block: block[0].baseline)
        if kind == RegionKind.MARGINAL_NUMBER:   # one region: the numbers of both margins
            blocks = _nonempty([sorted((line for b in blocks for line in b), key=lambda line: line.baseline)])
        for block in blocks:
            regions.append(LayoutRegion(kind, [_finish(comps, level, line, to_page) for line in block]))
    return PageLayout(page_w, page_h, angle, regions)


def _nonempty(blocks: list[list[LineParts]]) -> list[list[LineParts]]:
    return [block for block in blocks if block]


def _split_blocks(lines: list[LineParts], pitch: float) -> list[list[LineParts]]:
    """Cut a column of lines into blocks where the gap is well over a line pitch
    (a heading, a paragraph set apart): each block becomes its own region."""
    if len(lines) >= 3:   # the column's own spacing, measured
        pitch = float(np.median(np.diff([line.baseline for line in lines])))
    blocks: list[list[LineParts]] = []
    for line in lines:
        if blocks and line.baseline - blocks[-1][-1].baseline <= 1.7 * pitch:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def _is_number(comps: Components, line: LineParts) -> bool:
    """A marginal line number: a few small bodies, about one text height wide."""
    x0, _, x1, _ = line.box(comps)
    return len(line.bodies) <= 4 and x1 - x0 <= 2.5 * comps.text_height


# A folio is a few digits (Arabic-Indic or Western, sometimes in brackets or dashes) set apart from the text
# block. Its gap to the last footnote or text line is 1.7-1.8 pitches in Bayhaqi's 1950s print (the printer
# leaves about one blank line); a paragraph's last short line follows at one pitch.
FOLIO_MAX_BODIES = 5
FOLIO_GAP_PITCHES = 1.5


def _move_folios(comps: Components, parts: dict, pitch: float) -> None:
    """A short line alone at the very top or bottom of the page, well apart from
    the text, is the folio (page number), not text."""
    column = [(kind, block) for kind in (RegionKind.HEADER, RegionKind.MAIN, RegionKind.FOOTNOTE)
              for block in parts[kind]]
    lines = sorted((line for _, block in column for line in block), key=lambda line: line.baseline)
    if len(lines) < 3:
        return
    for line, neighbour in ((lines[0], lines[1]), (lines[-1], lines[-2])):
        x0, _, x1, _ = line.box(comps)
        if (x1 - x0 <= 4 * comps.text_height and len(line.bodies) <= FOLIO_MAX_BODIES
                and abs(line.baseline - neighbour.baseline) > FOLIO_GAP_PITCHES * pitch):
            for _, block in column:
                block[:] = [other for other in block if other is not line]
            parts[RegionKind.PAGE_NUMBER].append([line])
    for kind in (RegionKind.HEADER, RegionKind.MAIN, RegionKind.FOOTNOTE):
        parts[kind] = _nonempty(parts[kind])


class _PageMapping:
    """Analysis coordinates (scaled, levelled) -> original page pixels, on the page.

    A box drawn on the levelled page reaches past the original page's edges where the page was turned (a
    corner of a skewed page cropped close to its text), and a padded box past them anyway: every point is
    clipped to the page's pixels (0..width-1, 0..height-1), so that every format (PAGE-XML allows no
    negative coordinate) and the service's stored lines have the same geometry, all of it on the page.
    """

    def __init__(self, inverse_rotation: np.ndarray, scale: float, page_size: tuple[int, int]):
        self.inverse = inverse_rotation
        self.scale = scale
        self.width, self.height = page_size

    def __call__(self, points) -> tuple[tuple[int, int], ...]:
        pts = np.asarray(points, dtype=np.float64)
        page = (pts @ self.inverse[:, :2].T + self.inverse[:, 2]) / self.scale
        return tuple((min(max(int(round(x)), 0), self.width - 1), min(max(int(round(y)), 0), self.height - 1))
                     for x, y in page)


def _finish(comps: Components, level: np.ndarray, line: LineParts, to_page: _PageMapping) -> LayoutLine:
    ids = np.concatenate([line.bodies, np.asarray(line.marks + line.shared, dtype=np.int64)])
    boxes = comps.boxes[ids]
    height, width = level.shape
    pad = max(2, int(round(0.15 * comps.text_height)))
    # The line's components' boxes and a margin of ``pad``: its box (its own ink, padded) lies inside.
    wx0, wy0 = max(0, int(boxes[:, 0].min()) - pad), max(0, int(boxes[:, 1].min()) - pad)
    wx1, wy1 = min(width, int(boxes[:, 2].max()) + pad), min(height, int(boxes[:, 3].max()) + pad)
    window = comps.labels[wy0:wy1, wx0:wx1]
    pixels, side = line_pixels_and_side(window, line, wx0, wy0)
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if len(rows) == 0:   # nothing of it left between its cuts (cannot happen with bodies' costs): keep it whole
        line.cuts_above, line.cuts_below = [], []
        pixels, side = is_one_of(window, ids), np.ones(window.shape, bool)
        rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    # The line's box: its own ink, its side of the cuts.
    x0, y0, x1, y1 = wx0 + int(cols[0]), wy0 + int(rows[0]), wx0 + int(cols[-1]) + 1, wy0 + int(rows[-1]) + 1
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
    crop = np.s_[cy0 - wy0:cy1 - wy0, cx0 - wx0:cx1 - wx0]
    own = pixels[crop].astype(np.uint8)
    # Grow the line's own ink by a pixel or two so anti-aliased stroke edges
    # stay; everything else in the box (a neighbour's descender) becomes
    # paper, and so does whatever the growing reaches across a cut.
    grow = max(1, int(round(comps.text_height / 25)))
    own = cv2.dilate(own, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) & side[crop]
    image = np.where(own > 0, level[cy0:cy1, cx0:cx1], np.uint8(255))
    polygon = to_page([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    baseline = to_page([(x0, line.baseline), (x1, line.baseline)])
    x_height = int(round((line.baseline - line.core[0]) / to_page.scale))
    return LayoutLine(polygon=polygon, baseline=(baseline[0], baseline[1]), x_height=x_height, image=image)
