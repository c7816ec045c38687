"""Page layout analysis: a page image -> text regions -> lines, in reading order.

A classical pipeline (OpenCV connected components and projection profiles),
chosen over Tesseract's and kraken's segmenters by measurement (bench/README.md):

    binarise -> deskew -> components (text bodies, floating marks, rules, noise)
    -> regions (running header, main text, marginal notes and numbers,
       footnotes under a rule, folio) -> lines per region -> marks to lines
    -> a cut between neighbouring lines, column by column (seams.py): each
       line image keeps its side -> reading order (right-to-left pages: header, main text, margins, footnotes)

Framework-free: NumPy and OpenCV only.
"""

from .analyse import analyse_layout
from .model import LayoutLine, LayoutRegion, PageLayout, RegionKind

__all__ = ["analyse_layout", "LayoutLine", "LayoutRegion", "PageLayout", "RegionKind"]
