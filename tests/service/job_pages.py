"""Small rendered book pages for the jobs tests: PNG, multi-page TIFF, PDF and zip.

Pages come from ``tests.page_rendering`` (real fonts, known lines), kept small
(a few lines, no header or footnotes) so a page is read in well under a second.
"""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from tests.conftest import CORPUS_LINES
from tests.page_rendering import PageSpec, RenderedPage, render_page

WORDS = " ".join(CORPUS_LINES).split()


def small_page(seed: int, lines: int = 3, width: int = 900, height: int = 420) -> RenderedPage:
    spec = PageSpec(width=width, height=height, body_lines=lines, header=False, heading=False,
                    margin_numbers=False, footnotes=0, seed=seed)
    return render_page(spec, WORDS[seed * 17:] + WORDS)


def png(page: RenderedPage) -> bytes:
    out = io.BytesIO()
    Image.fromarray(page.image).save(out, format="PNG")
    return out.getvalue()


def tiff(pages: list[RenderedPage]) -> bytes:
    out = io.BytesIO()
    frames = [Image.fromarray(p.image) for p in pages]
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return out.getvalue()


def pdf(pages: list[RenderedPage]) -> bytes:
    """A PDF of the page images at 300 dpi, so the loader renders them back at their own size."""
    out = io.BytesIO()
    frames = [Image.fromarray(p.image) for p in pages]
    frames[0].save(out, format="PDF", save_all=True, append_images=frames[1:], resolution=300.0)
    return out.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()
