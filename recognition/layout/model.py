"""What layout analysis returns: regions of lines, with geometry in page pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

Point = tuple[int, int]


class RegionKind(StrEnum):
    """Region roles, in the order a reader meets them on a right-to-left page."""

    HEADER = "header"                    # running head (title, folio) above a rule
    PAGE_NUMBER = "page-number"          # a lone folio at the top or bottom
    MAIN = "main"                        # a block of the main text
    MARGINAL_NOTE = "marginal-note"      # side notes (marginalia)
    MARGINAL_NUMBER = "marginal-number"  # line numbers printed in the margin
    FOOTNOTE = "footnote"                # below the footnote rule


READING_ORDER = (RegionKind.HEADER, RegionKind.PAGE_NUMBER, RegionKind.MAIN,
                 RegionKind.MARGINAL_NOTE, RegionKind.MARGINAL_NUMBER, RegionKind.FOOTNOTE)


def polygon_bbox(polygon) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a polygon's points."""
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return min(xs), min(ys), max(xs), max(ys)


@dataclass
class LayoutLine:
    """One text line: where it is on the page and its cropped image.

    ``polygon`` is the line's box on the original page (four corners, clockwise
    from top-left; a rotated rectangle when the page was skewed, its corners clipped to the page's pixels,
    0..width-1 and 0..height-1, where it reached past an edge); ``baseline``
    runs from its left to its right end; ``x_height`` is the band (top, bottom
    baseline offsets upwards, in page pixels) where the letters' bodies lie.
    ``image`` is the line alone (its own ink, diacritics included, neighbours'
    ink removed) on white paper, deskewed: the recogniser's input.
    """

    polygon: tuple[Point, ...]
    baseline: tuple[Point, Point]
    x_height: int
    image: np.ndarray = field(repr=False)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return polygon_bbox(self.polygon)


@dataclass
class LayoutRegion:
    kind: RegionKind
    lines: list[LayoutLine]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        boxes = [line.bbox for line in self.lines]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))

    @property
    def polygon(self) -> tuple[Point, ...]:
        x0, y0, x1, y1 = self.bbox
        return (x0, y0), (x1, y0), (x1, y1), (x0, y1)


@dataclass
class PageLayout:
    width: int
    height: int
    skew_degrees: float   # the page's measured rotation (counter-clockwise positive)
    regions: list[LayoutRegion]

    @property
    def lines(self) -> list[LayoutLine]:
        return [line for region in self.regions for line in region.lines]
