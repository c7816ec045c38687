"""The cheapest path from the first column of a cost matrix to the last, one
row per column, by dynamic programming: the line cuts' search (seams.py).

NumPy only (no compiled extension may be added to serving): the sweep over
columns is the one Python loop, each column a few calls over every matrix and
row at once.
"""

from __future__ import annotations

import numpy as np


def cheapest_paths(costs: list[np.ndarray], most_step: int, step_cost: float) -> list[np.ndarray]:
    """For each cost matrix (rows x columns), the row per column minimising the
    summed cost plus ``step_cost`` per row moved, at most ``most_step`` rows
    between neighbouring columns (``cheapest_stacked_paths`` on the matrices stacked)."""
    n_rows = max(c.shape[0] for c in costs)
    n_cols = max(c.shape[1] for c in costs)
    stacked = np.zeros((n_cols, len(costs), n_rows), np.float32)
    for s, c in enumerate(costs):
        stacked[:, s, c.shape[0]:] = np.inf
        stacked[:c.shape[1], s, :c.shape[0]] = c.T
    path = cheapest_stacked_paths(stacked, most_step, step_cost)
    return [path[:c.shape[1], s] for s, c in enumerate(costs)]


def cheapest_stacked_paths(stacked: np.ndarray, most_step: int, step_cost: float) -> np.ndarray:
    """The cheapest path through each of several cost matrices stacked as
    (columns x matrices x rows), padded with impossible rows (inf) and free
    columns (0): the row per column (columns x matrices) minimising the summed
    cost plus ``step_cost`` per row moved, at most ``most_step`` (d) rows
    between neighbouring columns.

    All matrices are solved in one sweep over columns: one Python loop for the
    page, not one per cut. A column costs three NumPy calls over every cut and
    row at once: the 2d+1 rows a path may come from are a strided view of the
    previous column's totals (no copy), laid out with the move as the first
    axis so that the cheapest is an element-wise minimum of 2d+1 contiguous
    blocks. No choice is stored: the way back re-derives it from the kept
    totals, comparing the same float32 sums in the same order, so it takes the
    same (first cheapest) move the forward sweep's minimum came from
    (``tests/test_seams.py`` holds the plain loop it must agree with)."""
    n_cols, n, n_rows = stacked.shape
    d = most_step
    moves = 2 * d + 1
    penalty = (step_cost * np.abs(np.arange(-d, d + 1))).astype(np.float32)   # per move, rows -d..d
    # totals[x, s, d + r]: the cheapest path of cut s ending at row r of column x; d impossible rows each side.
    totals = np.full((n_cols, n, n_rows + 2 * d), np.inf, np.float32)
    inner = totals[:, :, d:d + n_rows]
    inner[0] = stacked[0]
    # came_from[x, j, s, r] = totals[x, s, r + j] (the path moving j - d rows into row r): a view, no copy.
    came_from = np.lib.stride_tricks.sliding_window_view(totals, n_rows, axis=2).transpose(0, 2, 1, 3)
    options = np.empty((moves, n, n_rows), np.float32)
    move_cost = penalty[:, None, None]
    for before, here, cost in zip(came_from[:-1], inner[1:], stacked[1:]):   # columns 1.. (views made once)
        np.add(before, move_cost, out=options)
        np.minimum.reduce(options, axis=0, out=here)
        np.add(here, cost, out=here)
    # The way back: from the cheapest end, at each column the first of the 2d+1 moves that gives the total.
    path = np.empty((n_cols, n), np.int64)
    path[-1] = inner[-1].argmin(axis=1)
    flat = totals.reshape(n_cols, -1)
    # Into flat[x]: cut s's padded row r + j is s * (n_rows + 2d) + r + j.
    window = (np.arange(n) * (n_rows + 2 * d))[:, None] + np.arange(moves)[None, :]
    for x in range(n_cols - 1, 0, -1):
        back = flat[x - 1][window + path[x][:, None]] + penalty
        path[x - 1] = path[x] + back.argmin(axis=1) - d
    return path
