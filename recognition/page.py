"""Page recognition: a page image -> regions -> lines with geometry and text.

``recognize_page(grey, recognizer)`` runs layout analysis, reads every line of
the page in one batch through the line recogniser, and returns a
``PageResult`` that renders itself as JSON, plain text, ALTO, PAGE-XML or hOCR
(``recognition.page_formats``). The command line and the API only call these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .ctc import CharacterResult, LineResult
from .image import ImageError, preprocess
from .layout import PageLayout, RegionKind, analyse_layout
from .layout.model import polygon_bbox

Point = tuple[int, int]


@dataclass
class PageLine:
    id: str
    polygon: tuple[Point, ...]
    baseline: tuple[Point, Point]
    x_height: int
    text: str
    confidence: float
    characters: tuple[CharacterResult, ...]
    # The grey line image the text was read from (the layout's: deskewed, neighbours' ink masked), so that what
    # is stored for the line is what reads as ``text`` alone too; not part of any output format.
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return polygon_bbox(self.polygon)


@dataclass
class PageRegion:
    id: str
    kind: RegionKind
    polygon: tuple[Point, ...]
    lines: list[PageLine]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return polygon_bbox(self.polygon)


@dataclass
class PageResult:
    width: int
    height: int
    skew_degrees: float
    regions: list[PageRegion]
    model: dict[str, str] = field(default_factory=dict)   # {"name", "version"} of the line model
    image_name: str = "page.png"

    @property
    def lines(self) -> list[PageLine]:
        return [line for region in self.regions for line in region.lines]

    def to_dict(self) -> dict:
        from .page_formats import page_dict
        return page_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def to_text(self) -> str:
        from .page_formats import page_text
        return page_text(self)

    def to_alto(self) -> str:
        from .page_formats import page_alto
        return page_alto(self)

    def to_page_xml(self) -> str:
        from .page_formats import page_xml
        return page_xml(self)

    def to_hocr(self) -> str:
        from .page_formats import page_hocr
        return page_hocr(self)


def read_lines(line_images: list[np.ndarray], recognizer) -> list[LineResult | None]:
    """The one place the page reader calls the line recogniser: one batch per page.

    A "line" the recogniser cannot take (a speck fewer pixels high than a line needs, which layout
    finds on noisy or sliver-shaped pages) is None: it is not text, and it must not fail the page.
    """
    config = recognizer.info.preprocess_config
    prepared = []
    for image in line_images:
        try:
            prepared.append(preprocess(image, config))
        except ImageError:
            prepared.append(None)
    read = iter(recognizer.recognize_lines([p for p in prepared if p is not None]) if any(
        p is not None for p in prepared) else [])
    return [None if p is None else next(read) for p in prepared]


def recognize_page(grey: np.ndarray, recognizer, image_name: str = "page.png") -> PageResult:
    """Grey page (H x W uint8) -> PageResult, lines in reading order."""
    layout: PageLayout = analyse_layout(grey)
    results = iter(read_lines([line.image for line in layout.lines], recognizer))
    regions = []
    for region in layout.regions:
        lines = []
        for line in region.lines:
            result = next(results)
            if result is None:
                continue
            lines.append(PageLine(id=f"r{len(regions) + 1}l{len(lines) + 1}", polygon=line.polygon,
                                  baseline=line.baseline, x_height=line.x_height, text=result.text,
                                  confidence=result.confidence, characters=result.characters, image=line.image))
        if lines:
            r = len(regions) + 1
            regions.append(PageRegion(id=f"r{r}", kind=region.kind, polygon=region.polygon, lines=lines))
    return PageResult(width=layout.width, height=layout.height, skew_degrees=layout.skew_degrees,
                      regions=regions, model={"name": recognizer.info.name, "version": recognizer.info.version},
                      image_name=image_name)
