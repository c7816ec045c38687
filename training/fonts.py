"""Arabic book typefaces available from Debian packages, and their coverage.

The list is curated: text faces a printed book could plausibly use (naskh,
simplified naskh, a few sans), not display or calligraphic faces (thuluth,
diwani, shadowed/outlined titles) that would teach the model shapes no book
line has. Install with ``apt-get install fonts-hosny-amiri
fonts-sil-scheherazade fonts-noto-core fonts-kacst fonts-kacst-one
fonts-arabeyes fonts-sil-lateef fonts-farsiweb fonts-freefarsi`` (``make`` does it).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import cache

FONT_DIRS = ("/usr/share/fonts",)

BOOK_FACES = (
    "Amiri-Regular", "Amiri-Bold", "Amiri-Slanted", "Amiri-BoldSlanted",
    "Scheherazade-Regular", "Scheherazade-Bold",
    "NotoNaskhArabic-Regular", "NotoNaskhArabic-Bold", "NotoNaskhArabic-Medium",
    "NotoSansArabic-Regular", "NotoSansArabic-Bold",
    "KacstOne", "KacstOne-Bold", "KacstBook", "KacstNaskh", "KacstOffice", "KacstLetter", "KacstFarsi",
    "Lateef-Regular", "Lateef-Bold", "Lateef-Medium",
    "ae_AlArabiya", "ae_Arab", "ae_Cortoba", "ae_Dimnah", "ae_Furat", "ae_Granada", "ae_Hani",
    "ae_Kayrawan", "ae_Khalid", "ae_Nada", "ae_Nagham", "ae_Salem", "ae_Sindbad", "ae_Tarablus",
    "ae_Rasheeq-Bold", "ae_Hor", "ae_AlBattar", "ae_AlYarmook", "ae_Petra", "ae_Nice",
    # naskh text faces of the Persian packages (fonts-farsiweb, fonts-freefarsi): other proportions
    # and joins than the Arabic packages' faces, which is what cross-book generalisation needs
    "nazli", "nazlib", "FreeFarsi", "FreeFarsi-Bold",
)


@dataclass(frozen=True)
class FontFace:
    name: str
    path: str

    @property
    def charset(self) -> frozenset[str]:
        return _charset(self.path)

    def covers(self, text: str) -> bool:
        chars = self.charset
        return all(c in chars or c.isspace() for c in text)


@cache
def _charset(path: str) -> frozenset[str]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(chr(cp) for cp in font.getBestCmap())


def joins_letters(face: FontFace, size: int = 40) -> bool:
    """Does the face really join Arabic letters under OpenType shaping?

    Some older faces carry only the legacy presentation-form code points and no
    GSUB joining features; raqm then draws every letter isolated. Joined beh is
    a short tooth, isolated beh a wide bowl, so joined text is much narrower.
    """
    from PIL import ImageFont

    font = ImageFont.truetype(face.path, size, layout_engine=ImageFont.Layout.RAQM)
    joined = font.getlength("بببب", direction="rtl", language="ar")
    isolated = 4 * font.getlength("ب", direction="rtl", language="ar")
    return joined < 0.75 * isolated


def find_book_fonts(names: tuple[str, ...] = BOOK_FACES, dirs=FONT_DIRS) -> list[FontFace]:
    """The installed faces of ``names`` that shape Arabic, in that order."""
    found: dict[str, str] = {}
    for directory in dirs:
        for path in glob.glob(os.path.join(directory, "**", "*.[ot]tf"), recursive=True):
            stem = os.path.splitext(os.path.basename(path))[0]
            found.setdefault(stem, path)
    faces = [FontFace(n, found[n]) for n in names if n in found]
    return [f for f in faces if joins_letters(f)]
