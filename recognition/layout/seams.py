"""Column-wise cuts between consecutive lines, found by dynamic programming.

Marks are first given to lines one by one (lines.assign_marks). Then between
each line and the next one below it in the same column a cut is chosen with
its own row in every column, like seam carving or kraken's line separation:
in every column the upper line's ink lies above the lower's, though where
tight, vocalised lines interleave no straight row parts them. The cut costs
the ink it leaves on the wrong side (a body's ink dearly, a mark's lightly,
so the first assignment can be revised), the ink it runs through, how
unlike the page's marks a mark's height about each baseline is, and a pull
toward the middle of the gap; it moves a few rows at most from one column
to the next. Marks then go to the side most of their ink is on (and the cut
is chosen once more, with where marks lie measured on that assignment); a
component the cut runs through (a haraka touching a descender of the line
above) is split: each line image draws only its side of its cuts.

Measured (issue-12c report): on a book page (1.9 leading, 30% harakat) the
share of line ink missing from or drawn into the wrong line image falls from
1.0%/0.8% to 0.2%/0.0%; on a 1.45-leading, 70%-harakat page it goes from
5.2% to 5.5%: there the mark rule's mistakes are themselves in column order
(none puts one line's mark above the other's in a column), so the ordering
adds nothing, and a lower line's fathas sit as near the upper line's letters
as its own kasras do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cheapest_paths import cheapest_stacked_paths
from .components import Components, is_one_of

# Cost, per pixel, of leaving a letter body's ink on the other line's side of
# the cut: high, since bodies were given to lines whole and reliably.
BODY_ON_WRONG_SIDE = 4.0
# ... and of a mark's pixel on the other side of the line the mark was given
# to: low, since that choice is what the cut is there to revise.
MARK_ON_WRONG_SIDE = 0.2
# Weight of where marks usually lie about their line's baseline (log-odds per pixel).
POSITION_WEIGHT = 0.3
# Cost of cutting through an ink pixel (a component split in two).
CUT_THROUGH_INK = 1.0
# Pull toward the middle between the bands, at the band edges (quadratic).
MIDDLE_PULL = 1.0
# Rows the cut may move from one column to the next, and the cost per row.
MOST_STEP = 3
STEP_COST = 0.3
# Cut, give the marks out again, measure where marks lie anew, cut again.
ROUNDS = 2
# Columns the cut keeps one row over, at least (see _Grid).
COLUMN_POOL = 2


@dataclass
class Cut:
    """Between an upper and a lower line: at column ``x0 + i`` rows above
    ``rows[i]`` belong to the upper line, rows from it on to the lower."""

    x0: int
    rows: np.ndarray

    @property
    def x1(self) -> int:
        return self.x0 + len(self.rows)


def _row_type(rows: int):
    """16-bit row numbers where they fit (today's pages are analysed at 3000 px at most), else 32-bit."""
    return np.int16 if rows < 2 ** 15 else np.int32


def own_side(line, x0: int, y0: int, shape: tuple[int, int], beyond_ends: bool = False) -> np.ndarray:
    """Which pixels of the window at (x0, y0) lie between the line's cuts.

    A cut spans only the columns both lines have text in; past its ends it
    limits nothing, unless ``beyond_ends``: then its end rows carry on
    outward (for a component the cut runs through, which may reach past
    the shorter line's end: each line draws only its side of it there too)."""
    height = shape[0]
    # Rows counted from the window's top in 16 bits (a page is analysed at 3000 px at most): NumPy
    # compares a column of rows with a row of limits ten times faster than in 64 bits.
    row_type = _row_type(height + 1)
    rows = np.arange(height, dtype=row_type)[:, None]
    cols = np.arange(x0, x0 + shape[1])
    side = np.ones(shape, bool)
    for cut, upper in [(cut, True) for cut in line.cuts_above] + [(cut, False) for cut in line.cuts_below]:
        limit = cut.rows[np.clip(cols - cut.x0, 0, len(cut.rows) - 1)] - y0
        if not beyond_ends:
            inside = (cols >= cut.x0) & (cols < cut.x1)
            limit = np.where(inside, limit, -1 if upper else height)
        limit = np.clip(limit, -1, height).astype(row_type)[None, :]
        side &= (rows >= limit) if upper else (rows < limit)
    return side


def line_pixels(labels: np.ndarray, line, x0: int, y0: int) -> np.ndarray:
    """The line's own pixels in the label window ``labels`` at (x0, y0): its bodies and marks on its
    side of its cuts, and of the components a cut runs through, its side even past the cut's ends."""
    return line_pixels_and_side(labels, line, x0, y0)[0]


def line_pixels_and_side(labels: np.ndarray, line, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
    """``line_pixels``, and which pixels of the window lie between the line's cuts (``own_side``)."""
    own = is_one_of(labels, np.concatenate([line.bodies, np.asarray(line.marks, np.int64)]))
    side = own_side(line, x0, y0, labels.shape)
    pixels = own & side
    if line.shared:
        shared = is_one_of(labels, np.asarray(line.shared, np.int64)) & ~own
        pixels |= shared & own_side(line, x0, y0, labels.shape, beyond_ends=True)
    return pixels, side


def cut_lines(comps: Components, lines: list) -> None:
    """Cut between each line and the next one below it in the same column;
    give each mark in between to the side most of its ink lies on, and note on
    both lines the components a cut runs through (each line keeps its side)."""
    order = sorted(lines, key=lambda line: line.baseline)
    h = comps.text_height
    extents = [_extent(comps, line.bodies) for line in order]
    pairs = []   # (upper index, lower index, first column, end column)
    for j, lower in enumerate(order):
        for k in range(j - 1, -1, -1):
            upper = order[k]
            if lower.baseline - upper.baseline > 4 * h:
                break
            x0, x1 = max(extents[j][0], extents[k][0]), min(extents[j][1], extents[k][1])
            if x1 - x0 >= h and upper.core[1] < lower.core[0]:
                pairs.append((k, j, x0, x1))
                break
    if not pairs:
        return
    grid = _Grid(h)
    gaps = _Gaps(comps, order, pairs, grid)
    for _ in range(ROUNDS):
        for line in order:
            line.shared.clear()
        heights = _mark_heights(comps, order)
        owners = _Owners(comps, order)
        rows, costs = gaps.costs(owners, order, heights)
        paths = cheapest_stacked_paths(costs, MOST_STEP, STEP_COST)
        cuts = [Cut(x0, rows[s][paths[:, s]].repeat(grid.columns)[:x1 - x0])
                for s, (_, _, x0, x1) in enumerate(pairs)]
        moved = [_settle_marks(comps, order[k], order[j], cut) for (k, j, _, _), cut in zip(pairs, cuts)]
        if not any(moved):   # the same marks, so the same costs: another round would find the same cuts
            break
    for (k, j, _, _), cut in zip(pairs, cuts):
        order[k].cuts_below.append(cut)
        order[j].cuts_above.append(cut)


def _extent(comps: Components, ids: np.ndarray) -> tuple[int, int]:
    boxes = comps.boxes[ids]
    return int(boxes[:, 0].min()), int(boxes[:, 2].max())


def _settle_marks(comps: Components, upper, lower, cut: Cut) -> bool:
    """Marks of either line go to the side of the cut most of their ink is on;
    a component the cut runs through is drawn by both lines, each its side.
    Whether any mark changed line."""
    reach = int(np.ceil(comps.text_height))
    highest, lowest = int(cut.rows.min()), int(cut.rows.max())
    top = max(0, highest - reach)
    bottom = min(comps.labels.shape[0], lowest + reach)
    window = comps.labels[top:bottom, cut.x0:cut.x1]
    n = len(comps.boxes)
    # Ink of each component on each side of the cut; the window reaches a text
    # height past the cut both ways, as far as a mark or a descender can. Rows
    # above the cut's highest row are all over it, rows from its lowest on all
    # under it: only the band between is split column by column.
    band = window[highest - top:lowest - top]
    # (in 16 bits, rows counted from the band's top: ten times faster than 64-bit comparisons)
    row_type = _row_type(lowest - highest + 1)
    below = np.arange(lowest - highest, dtype=row_type)[:, None] >= (cut.rows - highest).astype(row_type)[None, :]
    under = np.bincount(window[lowest - top:].ravel(), minlength=n) + np.bincount(band[below], minlength=n)
    over = np.bincount(window[:highest - top].ravel(), minlength=n) + np.bincount(band[~below], minlength=n)
    under[0] = over[0] = 0
    changed = False
    for line, other, wrong in ((upper, lower, under), (lower, upper, over)):
        marks = np.asarray(line.marks, np.int64)
        moving = marks[wrong[marks] > 0.5 * comps.areas[marks]] if len(marks) else marks
        ids = np.concatenate([line.bodies, marks])
        split = ids[wrong[ids] > 0].tolist()
        gone = set(moving.tolist())
        if gone:
            changed = True
            line.marks[:] = [c for c in line.marks if c not in gone]
            other.marks.extend(moving.tolist())
        for c in split:
            if c in gone:
                if wrong[c] < comps.areas[c]:
                    line.shared.append(c)
            else:
                other.shared.append(c)
    return changed


class MarkHeights:
    """How a page's mark ink lies about its lines' baselines (rows below
    positive): kasras just under the baseline, fathas a little over the letters."""

    def __init__(self, counts: np.ndarray, reach: int):
        """``counts``: mark ink at offsets -reach..reach."""
        self.reach = reach
        counts = np.convolve(counts, np.ones(3) / 3, mode="same")
        self.log = np.log((counts + 1.0) / (counts.sum() + len(counts)))

    def log_p(self, offsets: np.ndarray) -> np.ndarray:
        return self.log[np.clip(offsets, -self.reach, self.reach) + self.reach]


def _mark_heights(comps: Components, lines: list) -> MarkHeights:
    """Mark ink per row about the baseline, each mark's ink spread evenly over its box's rows."""
    reach = int(np.ceil(3 * comps.text_height))
    counts = np.zeros(2 * reach + 2)
    for line in lines:
        marks = np.asarray(line.marks, np.int64)
        if not len(marks):
            continue
        top = np.clip(comps.boxes[marks, 1] - line.baseline, -reach, reach) + reach
        bottom = np.clip(comps.boxes[marks, 3] - line.baseline, -reach, reach) + reach
        per_row = comps.areas[marks] / np.maximum(1, bottom - top)
        np.add.at(counts, top, per_row)       # a step up at the box's top row ...
        np.add.at(counts, bottom, -per_row)   # ... and down past its bottom
    return MarkHeights(np.cumsum(counts)[:-1], reach)


class _Owners:
    """Per component: the line (index into the page's lines) it belongs to, and
    what leaving its pixel on the other line's side of a cut costs."""

    def __init__(self, comps: Components, lines: list):
        self.line = np.full(len(comps.boxes), -1, np.int64)
        self.body = np.zeros(len(comps.boxes), bool)
        for k, line in enumerate(lines):
            self.line[np.asarray(line.marks, np.int64)] = k
            self.line[line.bodies] = k
            self.body[line.bodies] = True
        self.weight = np.where(self.body, BODY_ON_WRONG_SIDE, MARK_ON_WRONG_SIDE).astype(np.float32)


class _Grid:
    """The cut keeps one row over a few neighbouring columns and is placed on
    every other row or so, in proportion to the text's size (a mark is wider
    and taller than that): the search is that much shorter."""

    def __init__(self, text_height: float):
        self.columns = max(COLUMN_POOL, int(round(text_height / 13)))
        self.rows = max(1, int(round(text_height / 26)))

    def pooled(self, a: np.ndarray) -> np.ndarray:
        """Sums over each group of columns, the last axis (strided sums: faster than summing a short axis)."""
        return sum(a[..., i::self.columns] for i in range(self.columns))


# What a pixel in a gap is, for the cut between its upper and its lower line.
NEITHER, UPPER_BODY, UPPER_MARK, LOWER_BODY, LOWER_MARK = range(5)


class _Gaps:
    """The page's gaps between neighbouring lines a cut may take, each from the
    upper line's letter band bottom to the lower's band top over the columns
    both lines have text in. Kept from one round to the next: the labels there
    and the ink a cut at each row would run through. Costs come out stacked
    (padded to the tallest and widest gap) for the page's one DP sweep."""

    def __init__(self, comps: Components, lines: list, pairs: list, grid: _Grid):
        self.grid = grid
        self.upper = np.array([k for k, _, _, _ in pairs])
        self.lower = np.array([j for _, j, _, _ in pairs])
        self.top = np.array([lines[k].core[1] + 1 for k in self.upper])
        self.n_rows = np.maximum(1, np.array([lines[j].core[0] for j in self.lower]) - self.top)
        self.n_groups = np.array([-(-(x1 - x0) // grid.columns) for _, _, x0, x1 in pairs])   # pooled columns
        self.labels = []
        # Row-major over gaps (rows x gaps x groups): the running sums down the rows add whole blocks.
        self.through = np.zeros((int(self.n_rows.max()) + 1, len(pairs), int(self.n_groups.max())), np.float32)
        for s, (_, _, x0, x1) in enumerate(pairs):
            labels = np.zeros((self.n_rows[s], self.n_groups[s] * grid.columns), comps.labels.dtype)
            labels[:, :x1 - x0] = comps.labels[self.top[s]:self.top[s] + self.n_rows[s], x0:x1]
            self.labels.append(labels)
            # Cutting at r parts rows r-1 and r: through ink where both are one component.
            through = np.zeros(labels.shape, np.float32)
            through[1:] = (labels[1:] > 0) & (labels[1:] == labels[:-1])
            self.through[:self.n_rows[s], s, :self.n_groups[s]] = grid.pooled(through)
        middle = self.n_rows / 2.0
        rows = np.arange(len(self.through))
        pull = grid.columns * MIDDLE_PULL * ((rows[:, None] - middle[None, :]) / np.maximum(1.0, middle)[None, :]) ** 2
        self.pull = pull.astype(np.float32)[:, :, None]

    def costs(self, owners: _Owners, lines: list, heights: MarkHeights) -> tuple[np.ndarray, np.ndarray]:
        """The page rows a cut may take in each gap (gaps x rows) and its cost at each, per group of
        ``grid.columns`` columns, as ``cheapest_stacked_paths`` takes them (groups x gaps x rows): rows
        past a gap's own impossible (inf), groups past its width free (0)."""
        n, rows, groups = len(self.labels), int(self.n_rows.max()), self.through.shape[2]
        steps = np.arange(rows)
        # Where a line's marks usually lie, measured from its baseline over the
        # page: a mark's pixel left to the line whose marks seldom lie there costs.
        ys = self.top[:, None] + steps
        baselines = np.array([line.baseline for line in lines])
        prefer_upper = (heights.log_p(ys - baselines[self.upper][:, None])
                        - heights.log_p(ys - baselines[self.lower][:, None]))
        to_upper = (POSITION_WEIGHT * np.maximum(0.0, prefer_upper)).astype(np.float32)
        to_lower = (POSITION_WEIGHT * np.maximum(0.0, -prefer_upper)).astype(np.float32)
        # What a pixel costs left on the wrong side, by gap, what it is and its row: the real part is paid
        # for a pixel left below the cut (upper ink), the imaginary part above it (lower ink); a pixel of a
        # line's body or mark costs its wrong-side weight, a mark's of either line its row's position cost
        # on top. Complex, so one look-up and one pooling serve both (complex sums are the two sums).
        weight = np.zeros((n, 5, rows), np.complex64)
        weight.real[:, UPPER_BODY] = BODY_ON_WRONG_SIDE
        weight.real[:, UPPER_MARK] = np.float32(MARK_ON_WRONG_SIDE) + to_upper
        weight.real[:, LOWER_MARK] = to_upper
        weight.imag[:, LOWER_BODY] = BODY_ON_WRONG_SIDE
        weight.imag[:, LOWER_MARK] = np.float32(MARK_ON_WRONG_SIDE) + to_lower
        weight.imag[:, UPPER_MARK] = to_lower
        on_upper = owners.line[None, :] == self.upper[:, None]          # gaps x components
        on_lower = owners.line[None, :] == self.lower[:, None]
        kind = np.where(on_upper, np.where(owners.body, UPPER_BODY, UPPER_MARK),
                        np.where(on_lower, np.where(owners.body, LOWER_BODY, LOWER_MARK), NEITHER))
        pooled = np.zeros((rows, n, groups), np.complex64)
        # Gap by gap (a gap's pixels stay in the CPU's cache; stacked they do not, and it was 2x slower):
        # each pixel's entry in its gap's (kind, row) table, one look-up through the labels.
        for s, labels in enumerate(self.labels):
            height = len(labels)
            index = np.int16 if 5 * height < 2 ** 15 else np.int32
            entry = np.take((kind[s] * height).astype(index), labels)
            entry += steps[:height, None].astype(index)
            table = np.ascontiguousarray(weight[s, :, :height])
            # Pooled by looking up each column of a group apart and adding: the same sums in the same
            # order as pooling the looked-up block, 8x faster (strided complex sums are slow in NumPy).
            pooled[:height, s, :self.n_groups[s]] = sum(
                np.take(table, entry[:, i::self.grid.columns]) for i in range(self.grid.columns))
        up_weight, down_weight = pooled.real.copy(), pooled.imag.copy()
        # Running sums row by row (np.cumsum down the rows runs column by column, 2-4x slower): a gap's
        # padding rows are paper and add nothing.
        up_below = np.zeros((rows + 1, n, groups), np.float32)     # upper ink at rows >= r
        down_above = np.zeros((rows + 1, n, groups), np.float32)   # lower ink at rows < r
        for r in range(rows - 1, -1, -1):
            np.add(up_below[r + 1], up_weight[r], out=up_below[r])
        for r in range(rows):
            np.add(down_above[r], down_weight[r], out=down_above[r + 1])
        cost = up_below + down_above + CUT_THROUGH_INK * self.through + self.pull
        kept = np.arange(0, rows + 1, self.grid.rows)
        cost = cost[kept]
        for s in range(n):
            cost[:, s, self.n_groups[s]:] = 0.0
            cost[kept > self.n_rows[s], s, :] = np.inf
        return self.top[:, None] + kept, np.ascontiguousarray(cost.transpose(2, 1, 0))
