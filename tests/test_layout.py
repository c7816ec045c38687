"""Layout analysis on rendered pages whose lines are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from recognition.layout import RegionKind, analyse_layout
from tests.conftest import CORPUS_LINES
from tests.page_matching import match_lines
from tests.page_rendering import PageSpec, render_page

WORDS = " ".join(CORPUS_LINES).split()

LAYOUTS = {
    "book page": PageSpec(),
    "heavy harakat, tight": PageSpec(harakat=0.6, leading=1.5, seed=1),
    "skewed and noisy": PageSpec(skew_degrees=-2.8, noise=1.0, face="Scheherazade-Regular", seed=2),
    "header and footnotes with no rule": PageSpec(header_rule=False, footnote_rule=False, footnotes=3, seed=5),
    "footnote running on to a short line": PageSpec(footnotes=3, footnote_tail=True, seed=6),
    "skewed the other way, no furniture": PageSpec(skew_degrees=2.2, header=False, heading=False,
                                                   margin_numbers=False, footnotes=0, seed=3),
    # Bayhaqi's print: the page number alone at the bottom centre, about a blank line under a footnote
    "page number at the bottom under a footnote": PageSpec(folio_at_bottom=True, footnotes=1, seed=7),
    "page number at the bottom under the text": PageSpec(folio_at_bottom=True, footnotes=0, heading=False, seed=8),
    # Bayhaqi's chapter openings: a centred heading over the text, no header, the folio at the foot
    "chapter opening, page number at the foot": PageSpec(header=False, folio_at_bottom=True, footnotes=0,
                                                         margin_numbers=False, seed=11),
    "running head with no number and no rule": PageSpec(folio_at_bottom=True, header_rule=False, footnotes=2,
                                                        margin_numbers=False, seed=9),
}


@pytest.fixture(scope="module", params=list(LAYOUTS), ids=list(LAYOUTS))
def analysed(request):
    page = render_page(LAYOUTS[request.param], WORDS)
    return page, analyse_layout(page.image)


def test_every_line_found_once_none_merged_or_split(analysed):
    page, layout = analysed
    result = match_lines([t.bbox for t in page.lines], [line.bbox for line in layout.lines])
    assert result["lost"] == 0, result
    assert result["merged"] == 0 and result["split"] == 0, result
    assert result["found"] == result["truth"], result


def test_regions_have_the_right_roles_in_reading_order(analysed):
    page, layout = analysed
    result = match_lines([t.bbox for t in page.lines], [line.bbox for line in layout.lines])
    found_kind = [region.kind for region in layout.regions for _ in region.lines]
    for i, truth in enumerate(page.lines):
        assert found_kind[result["matches"][i]] == truth.kind, truth.text
    kinds = [region.kind for region in layout.regions]
    if RegionKind.HEADER in kinds:
        assert kinds[0] == RegionKind.HEADER
    if RegionKind.FOOTNOTE in kinds:
        assert kinds[-1] == RegionKind.FOOTNOTE
    main = [line for region in layout.regions if region.kind == RegionKind.MAIN for line in region.lines]
    tops = [line.bbox[1] for line in main]
    assert tops == sorted(tops), "main text lines go top to bottom"


def test_a_title_page_is_main_text_none_of_it_lost():
    """Big centred title, author, the publisher's small centred lines at the foot: not footnotes, not a header.
    (Lines of such mixed sizes are not all found one to one yet: only roles and coverage are checked.)"""
    page = render_page(PageSpec(title_page=True, seed=10), WORDS)
    layout = analyse_layout(page.image)
    kinds = {region.kind for region in layout.regions}
    assert RegionKind.FOOTNOTE not in kinds and RegionKind.HEADER not in kinds, kinds
    covered = np.zeros(page.image.shape, bool)
    for region in layout.regions:
        for line in region.lines:
            x0, y0, x1, y1 = line.bbox
            covered[y0:y1, x0:x1] = True
    for truth in page.lines:   # found, if perhaps in pieces
        x0, y0, x1, y1 = truth.bbox
        assert covered[y0:y1, x0:x1].mean() > 0.6, truth.text


def test_skew_is_measured(analysed):
    page, layout = analysed
    assert abs(layout.skew_degrees - page.skew_degrees) <= 0.3


BOOK_PAGE_SOME_HARAKAT = PageSpec(harakat=0.3, header=False, heading=False, footnotes=0, margin_numbers=False, seed=8)
TIGHT_HEAVY_HARAKAT = PageSpec(harakat=0.7, leading=1.45, header=False, heading=False, footnotes=0,
                               margin_numbers=False, seed=4)


@pytest.mark.parametrize("spec", [
    BOOK_PAGE_SOME_HARAKAT,
    pytest.param(TIGHT_HEAVY_HARAKAT, marks=pytest.mark.xfail(
        strict=True, reason="known gap: at 1.45 leading with 70% harakat line k's kasras and line k+1's fathas "
        "share 16-32 rows and sit as near the other line's letters as their own; neither the per-mark rule nor "
        "the column-wise cut after it (seams.py) gives them all out right: about 5.5% of the line ink goes "
        "astray and 9 of 16 boxes miss by 4-10 px (issue-12b and issue-12c reports)")),
], ids=["book page, some harakat", "tight, heavy harakat"])
def test_each_line_keeps_its_own_harakat_and_dots(spec):
    """No skew: a found line's box must hold its printed line's whole ink box
    (marks above the tallest letters and below the deepest included) and reach
    no further into its neighbours' marks."""
    page = render_page(spec, WORDS)
    layout = analyse_layout(page.image)
    truth = [t.bbox for t in page.lines]
    found = [line.bbox for line in layout.lines]
    assert len(found) == len(truth)
    tolerance = 3
    for t, f in zip(truth, found):
        assert f[1] <= t[1] + tolerance and f[3] >= t[3] - tolerance, (t, f)   # own marks kept
        assert f[1] >= t[1] - tolerance and f[3] <= t[3] + tolerance, (t, f)   # no neighbour's marks


def _dark_on_page(line, page_ink: np.ndarray) -> np.ndarray:
    """The page pixels a line image draws ink on (unskewed, unscaled pages): the
    image is a padded crop around the line's box, found where its ink lands on the page's."""
    x0, y0, _, _ = line.bbox
    dark = line.image < 128
    h, w = dark.shape
    shape = page_ink.shape
    best = None
    for pad in range(0, 16):
        ox, oy = max(0, x0 - pad), max(0, y0 - pad)
        if (best is None or ox != best[1] or oy != best[2]) and oy + h <= shape[0] and ox + w <= shape[1]:
            placed = np.zeros(shape, bool)
            placed[oy:oy + h, ox:ox + w] = dark
            hits = (placed & page_ink).sum()
            if best is None or hits > best[0]:
                best = (hits, ox, oy, placed)
    return best[3]


@pytest.mark.parametrize("spec, most_lost, most_foreign", [
    (BOOK_PAGE_SOME_HARAKAT, 0.006, 0.003),
    (TIGHT_HEAVY_HARAKAT, 0.06, 0.06),
], ids=["book page, some harakat", "tight, heavy harakat"])
def test_line_images_keep_their_own_ink_and_not_their_neighbours(spec, most_lost, most_foreign):
    """Pixel by pixel against each printed line's own ink: the share of a
    page's line ink missing from its line's image, and the share drawn into
    another line's image (0.2%/0.0% on the book page, 5.5%/5.5% on the tight one).
    Where lines' marks interleave (tight, vocalised) a few percent still go
    astray (the strict box test above): this keeps it from growing."""
    page = render_page(spec, WORDS)
    layout = analyse_layout(page.image)
    ink = page.image < 128
    owner = np.full(ink.shape, -1)
    for k, truth in enumerate(page.lines):
        x0, y0, x1, y1 = truth.bbox
        owner[y0:y1, x0:x1][truth.ink & (owner[y0:y1, x0:x1] < 0)] = k
    result = match_lines([t.bbox for t in page.lines], [line.bbox for line in layout.lines])
    lost = foreign = total = 0
    for k, found in result["matches"].items():
        drawn = _dark_on_page(layout.lines[found], ink)
        own = ink & (owner == k)
        lost += (own & ~drawn).sum()
        foreign += (drawn & ink & (owner >= 0) & (owner != k)).sum()
        total += own.sum()
    figures = f"own ink lost {lost / total:.2%}, foreign ink drawn {foreign / total:.2%}"
    assert lost / total <= most_lost, figures
    assert foreign / total <= most_foreign, figures


def test_line_images_hold_the_line_alone():
    page = render_page(PageSpec(header=False, heading=False, footnotes=0, margin_numbers=False), WORDS)
    layout = analyse_layout(page.image)
    for line in layout.lines:
        assert line.image.dtype == np.uint8 and line.image.ndim == 2
        assert line.image.shape[0] < 3 * line.x_height + 80
        assert line.image.min() < 100   # ink
        assert np.median(line.image) > 200   # on paper


@pytest.mark.parametrize("page", [
    np.full((1200, 900), 255, np.uint8),
    np.full((1200, 900), 30, np.uint8),
    np.clip(np.random.default_rng(0).normal(235, 6, (1200, 900)), 0, 255).astype(np.uint8),
], ids=["white", "black", "paper grain"])
def test_blank_pages_have_no_lines(page):
    assert analyse_layout(page).regions == []


def test_bilevel_600_dpi_page_is_analysed_at_half_size_and_mapped_back():
    spec = PageSpec(header=False, heading=False, footnotes=0, margin_numbers=False, body_lines=6)
    small = render_page(spec, WORDS)
    import cv2

    big = cv2.resize(small.image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    big = np.where(big < 128, 0, 255).astype(np.uint8)
    layout = analyse_layout(big, max_side=2400)
    truth = [tuple(2 * v for v in t.bbox) for t in small.lines]
    result = match_lines(truth, [line.bbox for line in layout.lines])
    assert result["lost"] == 0 and result["found"] == len(truth), result
