"""The layout's vectorised and faster building blocks against the plain code they replace."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from recognition.layout import nearest
from recognition.layout.components import find_components, label_components
from recognition.layout.nearest import FAR, squared_gaps_to_lines


def _plain_squared_gaps(comps, line_of, marks, n_lines, reach):
    """Every ink pixel within ``reach`` of each mark's box, one mark and one pixel at a time."""
    gaps = np.full((len(marks), n_lines), FAR, np.int64)
    ys, xs = np.nonzero(comps.labels)
    for i, mark in enumerate(marks):
        x0, y0, x1, y1 = comps.boxes[mark]
        for y, x in zip(ys, xs):
            line = line_of[comps.labels[y, x]]
            dy, dx = max(0, y0 - y, y - (y1 - 1)), max(0, x0 - x, x - (x1 - 1))
            if line >= 0 and dx * dx + dy * dy <= reach * reach:
                gaps[i, line] = min(gaps[i, line], dx * dx + dy * dy)
    return gaps


def _speckled_page(seed: int, shape=(60, 90)):
    rng = np.random.default_rng(seed)
    ink = (rng.random(shape) < 0.08).astype(np.uint8)
    ink[5:9, 3:80] = 1            # a long stroke: one component that many marks are near
    ink[shape[0] - 6:, 40:52] = 1  # a blob at the page's foot: windows there are moved inside the page
    comps = find_components(ink)
    n = len(comps.boxes)
    line_of = rng.integers(-1, 4, n)   # components on lines 0-3, or on none
    line_of[0] = -1                    # paper
    return comps, line_of


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_squared_gaps_match_a_pixel_by_pixel_count(seed):
    comps, line_of = _speckled_page(seed)
    marks = np.arange(1, len(comps.boxes))
    for reach in (3, 7):
        fast = squared_gaps_to_lines(comps, line_of, marks, 4, reach)
        assert (fast == _plain_squared_gaps(comps, line_of, marks, 4, reach)).all()


def test_marks_in_many_groups_and_a_page_smaller_than_a_window(monkeypatch):
    """Groups of a few marks (sorted by size, each with its own window) and a page padded to hold
    a window give the same distances."""
    monkeypatch.setattr(nearest, "GROUP_PIXELS", 400)
    comps, line_of = _speckled_page(5, shape=(14, 20))
    marks = np.arange(1, len(comps.boxes))[::-1]
    fast = squared_gaps_to_lines(comps, line_of, marks, 4, reach=9)
    assert (fast == _plain_squared_gaps(comps, line_of, marks, 4, reach=9)).all()
    assert (fast < FAR).any() and (fast == FAR).any()


def test_component_labelling_is_opencvs_default_labelling():
    """Into 16-bit labels, or 32-bit ones past 65 534 components, components must be numbered as
    OpenCV's default does (raster order): marks, bodies and lines are sorted and tie-broken by label."""
    rng = np.random.default_rng(7)
    few = (rng.random((301, 457)) < 0.3).astype(np.uint8)
    few[100:140, 20:400] = 1
    many = np.zeros((600, 600), np.uint8)
    many[::2, ::2] = 1                      # 90 000 single-pixel components
    for ink, dtype in ((few, np.uint16), (many, np.int32)):
        count, labels, stats, centroids = label_components(ink)
        ref_count, ref_labels, ref_stats, ref_centroids = cv2.connectedComponentsWithStats(ink, connectivity=8)
        assert labels.dtype == dtype
        assert count == ref_count > 100
        assert (labels == ref_labels).all() and (stats == ref_stats).all()
        assert np.array_equal(centroids, ref_centroids)


def test_a_level_page_needs_no_warp():
    """analyse_layout skips rotating a page whose skew is 0: OpenCV's warp by the identity must copy it."""
    from recognition.layout.deskew import rotate, rotation

    page = np.random.default_rng(1).integers(0, 256, (301, 517), dtype=np.uint8)
    matrix, size = rotation(page.shape, -0.0)
    assert size == (517, 301)
    assert np.array_equal(rotate(page, matrix, size, fill=255), page)


def test_first_pixels_are_each_components_first_in_raster_order():
    comps, _ = _speckled_page(11, shape=(80, 120))
    ids = np.arange(1, len(comps.boxes))[::-1]
    rows, cols = comps.first_pixels(ids)
    ys, xs = np.nonzero(comps.labels)   # raster order
    first = {}
    for y, x in zip(ys, xs):
        first.setdefault(int(comps.labels[y, x]), (y, x))
    assert [(int(r), int(c)) for r, c in zip(rows, cols)] == [first[int(i)] for i in ids]
