"""Rendered book pages with known lines, for layout tests and the page bench.

Real Debian fonts shaped by raqm (as ``tests.rendering``), words placed right
to left on a shared baseline and justified to the column, so every line's
text (logical order) and box are known exactly. Layout options cover what
printed Arabic books do: a running header with its page number above a rule
(or the number alone at the bottom centre), a title page,
a centred heading, justified paragraphs, line numbers in the margin every five
lines, footnotes in a smaller size under a short rule, heavy harakat, skew and
scanner noise; the header's and the footnotes' rules can be left out, as some
books do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from recognition.layout import RegionKind
from recognition.layout.model import polygon_bbox
from tests.rendering import font
from training.synth import HARAKAT

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@dataclass
class TruthLine:
    text: str                                 # logical order, as printed (harakat included)
    kind: RegionKind
    polygon: tuple[tuple[int, int], ...]      # ink box corners on the final (skewed) page
    # The line's own ink inside its box (drawn alone), on pages that are not
    # skewed: which pixels are whose where two lines' marks interleave.
    ink: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return polygon_bbox(self.polygon)


@dataclass
class RenderedPage:
    image: np.ndarray                         # grey uint8
    lines: list[TruthLine] = field(default_factory=list)
    skew_degrees: float = 0.0

    def lines_of(self, kind: RegionKind) -> list[TruthLine]:
        return [line for line in self.lines if line.kind == kind]


@dataclass(frozen=True)
class PageSpec:
    face: str = "Amiri-Regular"
    size: int = 40                 # body text, pixels (about 11 pt at 300 dpi)
    width: int = 1700
    height: int = 2400
    body_lines: int = 16
    leading: float = 1.9           # baseline distance in body sizes
    header: bool = True
    header_rule: bool = True       # some books print the running head with no rule under it
    heading: bool = True
    margin_numbers: bool = True
    footnotes: int = 2
    footnote_rule: bool = True     # ... and footnotes with no rule over them, only a smaller size
    footnote_tail: bool = False    # the first footnote runs on to a short second line
    folio_at_bottom: bool = False  # the page number alone at the bottom centre (the header, if any, without it)
    title_page: bool = False       # a book's title page instead: big centred title, author, publisher (all main)
    harakat: float = 0.0           # share of letters given a haraka
    skew_degrees: float = 0.0
    noise: float = 0.0             # speckle density and grey noise strength
    seed: int = 0


def _vocalise(text: str, share: float, rng: np.random.Generator) -> str:
    out = []
    for ch in text:
        out.append(ch)
        if "\u0621" <= ch <= "\u064a" and rng.random() < share:
            out.append(HARAKAT[rng.integers(len(HARAKAT))])
    return "".join(out)


class _Page:
    def __init__(self, spec: PageSpec):
        self.spec = spec
        self.image = Image.new("L", (spec.width, spec.height), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.lines: list[tuple[str, RegionKind, tuple[int, int, int, int]]] = []
        self.inks: list[np.ndarray] = []

    def _font(self, size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(font(self.spec.face).path, size, layout_engine=ImageFont.Layout.RAQM)

    def words(self, words: list[str], right: int, baseline: int, size: int, kind: RegionKind,
              justify_to: int | None = None) -> None:
        """Words right to left on one baseline; spread to ``justify_to`` px wide when given."""
        face = self._font(size)
        widths = [face.getlength(w, direction="rtl", language="ar") for w in words]
        space = face.getlength(" ")
        if justify_to and len(words) > 1:
            space = max(space, (justify_to - sum(widths)) / (len(words) - 1))
        x = right
        boxes = []
        for word, width in zip(words, widths):
            self.draw.text((x, baseline), word, font=face, fill=0, anchor="rs", direction="rtl", language="ar")
            boxes.append(self.draw.textbbox((x, baseline), word, font=face, anchor="rs", direction="rtl",
                                            language="ar"))
            x -= width + space
        glyphs = (int(min(b[0] for b in boxes)), int(min(b[1] for b in boxes)),
                  int(max(b[2] for b in boxes)), int(max(b[3] for b in boxes)))
        box, ink = self._ink_box(words, widths, space, right, baseline, face, glyphs)
        self.lines.append((" ".join(words), kind, box))
        self.inks.append(ink)

    def _ink_box(self, words, widths, space, right, baseline, face, glyphs):
        """The line's exact ink box and its ink in that box: glyph boxes are font
        metrics, wider than the ink; the line is drawn again alone and measured."""
        m = 10
        x0, y0, x1, y1 = glyphs
        alone = Image.new("L", (x1 - x0 + 2 * m, y1 - y0 + 2 * m), 0)
        draw = ImageDraw.Draw(alone)
        x = right
        for word, width in zip(words, widths):
            draw.text((x - x0 + m, baseline - y0 + m), word, font=face, fill=255, anchor="rs",
                      direction="rtl", language="ar")
            x -= width + space
        ink = np.asarray(alone) > 96
        ys, xs = np.nonzero(ink)
        box = int(xs.min() + x0 - m), int(ys.min() + y0 - m), int(xs.max() + 1 + x0 - m), int(ys.max() + 1 + y0 - m)
        return box, ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]

    def rule(self, x0: int, x1: int, y: int, thickness: int = 3) -> None:
        self.draw.rectangle((x0, y, x1, y + thickness - 1), fill=0)

    def text_width(self, words: list[str], size: int) -> float:
        face = self._font(size)
        return face.getlength(" ".join(words), direction="rtl", language="ar")


def render_page(spec: PageSpec, words: list[str]) -> RenderedPage:
    """A page of ``words`` (taken in order, reused cyclically) laid out by ``spec``."""
    rng = np.random.default_rng(spec.seed)
    page = _Page(spec)
    size, left, right = spec.size, int(spec.width * 0.14), int(spec.width * 0.88)
    column = right - left
    pitch = int(spec.leading * size)
    stream = iter(words * 50)
    y = int(spec.height * 0.06) + size

    def take_line(size_px: int, width: int) -> list[str]:
        taken: list[str] = []
        while True:
            word = _vocalise(next(stream), spec.harakat, rng)
            if taken and page.text_width(taken + [word], size_px) > width:
                return taken + []
            taken.append(word)
            if page.text_width(taken, size_px) > width * 0.93:
                return taken

    def centred(words_in_line: list[str], baseline: int, size_px: int, kind: RegionKind) -> None:
        page.words(words_in_line, (left + right) // 2 + int(page.text_width(words_in_line, size_px) / 2),
                   baseline, size_px, kind)

    if spec.title_page:
        return _title_page(spec, page, centred, take_line, size)
    if spec.header:
        title = ["كتاب", "الأسماء", "والصفات"]
        centred(title, y, size, RegionKind.HEADER)
        if not spec.folio_at_bottom:
            number = [str(spec.seed + 7).translate(ARABIC_INDIC)]
            page.words(number, left + int(page.text_width(number, size)), y, size, RegionKind.HEADER)
            # The header's two pieces are one printed line: merge them into one truth line.
            (t2, _, b2), (t1, _, b1) = page.lines.pop(), page.lines.pop()
            box = (min(b1[0], b2[0]), min(b1[1], b2[1]), max(b1[2], b2[2]), max(b1[3], b2[3]))
            page.lines.append((f"{t1} {t2}", RegionKind.HEADER, box))
            ink2, ink1 = page.inks.pop(), page.inks.pop()
            page.inks.append(_union(box, (b1, ink1), (b2, ink2)))
        if spec.header_rule:
            page.rule(left, right, y + int(0.6 * size))
        y += int(1.3 * pitch)
    if spec.heading:
        heading_size = int(size * 1.4)
        heading = ["باب", "ذكر", "الأسماء"]
        y += int(0.5 * pitch)
        page.words(heading, (left + right) // 2 + int(page.text_width(heading, heading_size) / 2), y,
                   heading_size, RegionKind.MAIN)
        y += int(1.6 * pitch)
    for i in range(spec.body_lines):
        last = i == spec.body_lines - 1
        words_in_line = take_line(size, column)
        page.words(words_in_line, right, y, size, RegionKind.MAIN, None if last else column)
        if spec.margin_numbers and (i + 1) % 5 == 0:
            number = [str(i + 1).translate(ARABIC_INDIC)]
            page.words(number, left - int(0.9 * size), y, size, RegionKind.MARGINAL_NUMBER)
        y += pitch
    if spec.footnotes:
        small = int(size * 0.75)
        y += int(0.3 * pitch)
        if spec.footnote_rule:
            page.rule(right - column // 3, right, y, thickness=2)
        y += int(1.3 * small)
        for k in range(spec.footnotes):
            words_in_line = [f"({k + 1})".translate(ARABIC_INDIC)] + take_line(small, column - 2 * small)
            page.words(words_in_line, right, y, small, RegionKind.FOOTNOTE)
            y += int(1.8 * small)
            if spec.footnote_tail and k == 0:   # a run-on line of two words, set flush right
                page.words(take_line(small, int(0.12 * column))[:2], right, y, small, RegionKind.FOOTNOTE)
                y += int(1.8 * small)
    if spec.folio_at_bottom:   # 1.7-1.8 text pitches under the last line, as Bayhaqi's printer set it
        y += int(0.8 * pitch) if spec.footnotes == 0 else int(1.7 * pitch) - int(1.8 * int(size * 0.75))
        centred([str(spec.seed + 7).translate(ARABIC_INDIC)], y, size, RegionKind.PAGE_NUMBER)
    return _finish(spec, page, rng)


def _title_page(spec: PageSpec, page: _Page, centred, take_line, size: int) -> RenderedPage:
    """Title three times the text size, the author's name under it, the publisher's lines small at the foot."""
    y = int(spec.height * 0.12) + 3 * size
    centred(["كتاب", "الأسماء"], y, 3 * size, RegionKind.MAIN)
    y += int(2.2 * size)
    centred(["تأليف"], y + size, int(1.2 * size), RegionKind.MAIN)
    y += int(3.2 * size)
    centred(take_line(int(1.4 * size), int(0.5 * spec.width)), y, int(1.4 * size), RegionKind.MAIN)
    # The publisher's lines, small and of about one width: their right edges agree as footnotes' do.
    y = int(spec.height * 0.78)
    for _ in range(4):
        centred(take_line(int(0.8 * size), int(0.3 * spec.width)), y, int(0.8 * size), RegionKind.MAIN)
        y += 2 * size
    return _finish(spec, page, np.random.default_rng(spec.seed))


def _finish(spec: PageSpec, page: _Page, rng: np.random.Generator) -> RenderedPage:
    grey = np.asarray(page.image, dtype=np.float32)
    truth = [TruthLine(text, kind, ((b[0], b[1]), (b[2], b[1]), (b[2], b[3]), (b[0], b[3])), ink)
             for (text, kind, b), ink in zip(page.lines, page.inks)]
    if spec.skew_degrees:
        grey, truth = _rotate(grey, truth, spec.skew_degrees)
    if spec.noise:
        grey = _add_noise(grey, spec.noise, rng)
    return RenderedPage(np.clip(grey, 0, 255).astype(np.uint8), truth, spec.skew_degrees)


def _union(box, *parts) -> np.ndarray:
    """Ink masks of pieces of one line (box, mask) in the line's whole box."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for (bx0, by0, bx1, by1), ink in parts:
        out[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] |= ink
    return out


def _rotate(grey: np.ndarray, truth: list[TruthLine], degrees: float):
    import cv2

    h, w = grey.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    rotated = cv2.warpAffine(grey, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
    moved = []
    for line in truth:
        pts = np.asarray(line.polygon, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
        moved.append(TruthLine(line.text, line.kind, tuple((int(round(x)), int(round(y))) for x, y in pts)))   # no ink
    return rotated, moved


def _add_noise(grey: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Scanner-like: paper grain, a little blur, and scattered specks."""
    import cv2

    grey = cv2.GaussianBlur(grey, (3, 3), 0.8)
    grey = grey + rng.normal(0, 25 * strength, grey.shape)
    specks = rng.random(grey.shape) < 0.0015 * strength
    grey[specks] = 40
    return grey
