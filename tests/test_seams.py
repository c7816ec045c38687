"""The column-wise cut between two lines whose ink shares rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recognition.layout.cheapest_paths import cheapest_paths
from recognition.layout.components import find_components
from recognition.layout.lines import assign_marks, find_lines
from recognition.layout.seams import MOST_STEP, STEP_COST, cut_lines, line_pixels, own_side


def _two_interleaved_lines() -> tuple[np.ndarray, dict[str, tuple[slice, slice]]]:
    """Two lines of word-like bars. The upper line has a descender with a kasra
    under it; the lower an alef with a fatha over it, further along. The kasra
    lies lower than the fatha and the descender reaches below the alef's top,
    so no straight row parts the lines: only a cut with a row per column does."""
    ink = np.zeros((200, 640), np.uint8)
    parts = {
        "descender": (slice(40, 76), slice(100, 106)),
        "kasra": (slice(78, 84), slice(97, 107)),
        "alef": (slice(79, 136), slice(300, 306)),
        "fatha": (slice(70, 76), slice(297, 307)),
    }
    for x in range(40, 600, 100):
        for top in (40, 110):          # the upper and the lower line's words, densest at the baseline
            ink[top:top + 16, x + 20:x + 60] = 1
            ink[top + 16:top + 26, x:x + 80] = 1
    for rows, cols in parts.values():
        ink[rows, cols] = 1
    return ink, parts


def _lines_and_cut():
    ink, parts = _two_interleaved_lines()
    comps = find_components(ink)
    orphans: list[int] = []
    lines, _ = find_lines(comps, comps.bodies, orphans)
    assign_marks(comps, lines, np.concatenate([comps.marks, np.asarray(orphans, np.int64)]))
    cut_lines(comps, lines)
    return ink, parts, comps, lines


def test_marks_that_share_rows_stay_with_their_lines():
    ink, parts, comps, (upper, lower) = _lines_and_cut()
    label = {name: int(comps.labels[rows, cols].max()) for name, (rows, cols) in parts.items()}
    assert label["kasra"] in upper.marks and label["fatha"] in lower.marks
    (cut,) = upper.cuts_below
    assert lower.cuts_above == [cut]
    kasra_rows, fatha_rows = parts["kasra"][0], parts["fatha"][0]
    assert kasra_rows.start > fatha_rows.stop   # the premise: no straight cut exists
    assert cut.rows[100 - cut.x0] >= kasra_rows.stop and cut.rows[300 - cut.x0] <= fatha_rows.start


def test_each_line_image_window_holds_only_its_own_side():
    ink, parts, comps, (upper, lower) = _lines_and_cut()
    height, width = ink.shape
    upper_side = own_side(upper, 0, 0, (height, width))
    lower_side = own_side(lower, 0, 0, (height, width))
    upper_pixels, lower_pixels = line_pixels(comps.labels, upper, 0, 0), line_pixels(comps.labels, lower, 0, 0)
    assert not (upper_pixels & lower_pixels).any()   # no pixel drawn by both lines
    assert ((upper_pixels | lower_pixels) == (ink > 0)).all()   # and none by neither
    for name, side in (("descender", upper_side), ("kasra", upper_side), ("alef", lower_side),
                       ("fatha", lower_side)):
        rows, cols = parts[name]
        assert side[rows, cols].all(), name


def test_a_short_line_does_not_draw_the_long_lines_word_past_the_cut():
    """The cut spans the columns both lines have text in; an upper word that runs past the lower
    (shorter) line's end and reaches into it with a descender is cut through: past the cut's end
    the lower line must not draw the rest of that word."""
    ink = np.zeros((200, 640), np.uint8)
    for x in range(40, 600, 100):
        ink[40:56, x + 20:x + 60] = 1          # the upper line, long
        ink[56:66, x:x + 80] = 1
    for x in range(40, 400, 100):
        ink[110:126, x + 20:x + 60] = 1        # the lower line, ends at x = 420
        ink[126:136, x:x + 80] = 1
    ink[56:66, 420:440] = 1                    # one upper word from 340 to 520 ...
    ink[40:118, 404:410] = 1                   # ... with a descender into the lower line's letters
    comps = find_components(ink)
    orphans: list[int] = []
    lines, _ = find_lines(comps, comps.bodies, orphans)
    assign_marks(comps, lines, np.concatenate([comps.marks, np.asarray(orphans, np.int64)]))
    cut_lines(comps, lines)
    upper, lower = sorted(lines, key=lambda line: line.baseline)
    word = int(comps.labels[60, 480])
    assert word in upper.bodies and word in lower.shared   # the premise: the cut runs through the word
    lower_pixels = line_pixels(comps.labels, lower, 0, 0)
    assert not lower_pixels[:90, 420:].any(), "the lower line draws the upper word past the cut's end"
    assert line_pixels(comps.labels, upper, 0, 0)[40:66, 340:520].sum() == ink[40:66, 340:520].sum()


def _cheapest_paths_reference(costs: list[np.ndarray]) -> list[np.ndarray]:
    """The cut's DP written plainly, one cut, column and row at a time, in the same float32
    arithmetic; ties go to the first move (from -MOST_STEP rows to +MOST_STEP) and the first row."""
    paths = []
    penalty = [np.float32(STEP_COST * abs(move)) for move in range(-MOST_STEP, MOST_STEP + 1)]
    for cost in costs:
        n_rows, n_cols = cost.shape
        total = [[np.float32(cost[r, 0]) for r in range(n_rows)]]
        came = [[0] * n_rows]
        for x in range(1, n_cols):
            total.append([]), came.append([])
            for r in range(n_rows):
                best, best_move = np.float32(np.inf), 0
                for j, move in enumerate(range(-MOST_STEP, MOST_STEP + 1)):
                    if 0 <= r + move < n_rows and total[x - 1][r + move] + penalty[j] < best:
                        best, best_move = total[x - 1][r + move] + penalty[j], move
                total[x].append(best + np.float32(cost[r, x]))
                came[x].append(best_move)
        path = [int(np.argmin(total[-1]))]
        for x in range(n_cols - 1, 0, -1):
            path.append(path[-1] + came[x][path[-1]])
        paths.append(np.array(path[::-1]))
    return paths


def _path_cost(cost: np.ndarray, path: np.ndarray) -> float:
    return float(cost[path, np.arange(len(path))].sum() + STEP_COST * np.abs(np.diff(path)).sum())


def test_the_page_wide_dp_finds_the_same_cuts_as_a_plain_loop():
    """All of a page's cuts are solved in one vectorised sweep over columns (cuts of different
    heights and widths padded to one block): each must be the cut the plain loop finds alone."""
    rng = np.random.default_rng(12)
    costs = [rng.random((rows, cols)).astype(np.float32) * 4
             for rows, cols in ((9, 40), (3, 25), (14, 7), (1, 12), (6, 1))]
    costs.append(np.round(rng.random((8, 30)) * 3).astype(np.float32))   # whole numbers: many ties
    for fast, plain, cost in zip(cheapest_paths(costs, MOST_STEP, STEP_COST), _cheapest_paths_reference(costs), costs):
        assert fast.shape == (cost.shape[1],)
        assert (fast == plain).all()
        assert np.abs(np.diff(fast)).max(initial=0) <= MOST_STEP and fast.min() >= 0 and fast.max() < cost.shape[0]


def test_the_dp_cut_is_the_cheapest_of_all_cuts():
    """On cuts small enough to try every path: none is cheaper than the DP's."""
    rng = np.random.default_rng(3)
    for rows, cols in ((5, 4), (7, 3), (2, 6)):
        cost = rng.random((rows, cols)).astype(np.float32) * 3
        (path,) = cheapest_paths([cost], MOST_STEP, STEP_COST)
        best = min(_path_cost(cost, np.array(p)) for p in itertools.product(range(rows), repeat=cols)
                   if np.abs(np.diff(p)).max(initial=0) <= MOST_STEP)
        assert _path_cost(cost, path) == pytest.approx(best, abs=1e-4)
