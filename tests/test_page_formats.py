"""Whole-page recognition with the shipped model, and every output format.

ALTO and PAGE-XML are validated against the official schemas (copies in
tests/schemas/, so no network and no ../shared needed)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from recognition import Recognizer
from recognition.image import ImageError
from recognition.layout import RegionKind
from recognition.metrics import edit_distance
from recognition.page import recognize_page
from recognition.page_loader import count_pages, iter_pages
from recognition.page_select import load_page
from recognition.text import normalize_text
from tests.conftest import CORPUS_LINES
from tests.page_rendering import PageSpec, render_page

SCHEMAS = Path(__file__).parent / "schemas"
MODEL = Path(__file__).parent.parent / "models/arabic-crnn-v1-int8.onnx"
WORDS = " ".join(CORPUS_LINES).split()


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer(MODEL, threads=1)


@pytest.fixture(scope="module")
def rendered():
    return render_page(PageSpec(body_lines=10, skew_degrees=1.5, seed=5), WORDS)


@pytest.fixture(scope="module")
def page(rendered, recognizer):
    return recognize_page(rendered.image, recognizer, image_name="rendered.png")


def test_page_text_reads_like_its_lines(page, rendered):
    truth = normalize_text(" ".join(t.text for t in rendered.lines))
    found = normalize_text(page.to_text())
    cer = edit_distance(truth, found) / len(truth)
    assert cer < 0.05, (cer, found[:200])


def test_text_has_regions_in_reading_order_separated_by_blank_lines(page):
    kinds = [region.kind for region in page.regions]
    assert kinds[0] == RegionKind.HEADER and kinds[-1] == RegionKind.FOOTNOTE
    blocks = page.to_text().rstrip("\n").split("\n\n")
    assert len(blocks) == len(page.regions)
    assert [b.split("\n") for b in blocks] == [[line.text for line in r.lines] for r in page.regions]


def test_json_has_geometry_text_and_confidences(page):
    data = json.loads(page.to_json())
    assert data["width"] == page.width and data["model"]["name"]
    line = data["regions"][1]["lines"][0]
    assert len(line["polygon"]) == 4 and len(line["baseline"]) == 2
    assert 0 < line["confidence"] <= 1
    assert "".join(c["char"] for c in line["characters"]) == line["text"]


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def test_alto_validates_and_declares_rtl(page):
    doc = etree.fromstring(page.to_alto().encode())
    _schema("alto-4-4.xsd").assertValid(doc)
    ns = {"a": "http://www.loc.gov/standards/alto/ns-v4#"}
    lines = doc.findall(".//a:TextLine", ns)
    assert len(lines) == len(page.lines)
    assert all(line.get("BASEDIRECTION") == "rtl" for line in lines)
    first = lines[0].findall("a:String", ns)
    assert " ".join(s.get("CONTENT") for s in first) == page.lines[0].text
    for string in first:
        assert len(string.get("CC").split()) == len(string.get("CONTENT"))
        assert 0 <= float(string.get("WC")) <= 1


def test_page_xml_validates_and_keeps_reading_order(page):
    doc = etree.fromstring(page.to_page_xml().encode())
    _schema("pagecontent-2019-07-15.xsd").assertValid(doc)
    ns = {"p": "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"}
    refs = [r.get("regionRef") for r in doc.findall(".//p:RegionRefIndexed", ns)]
    assert refs == [region.id for region in page.regions]
    line = doc.find(".//p:TextLine", ns)
    assert line.find("p:Baseline", ns) is not None
    assert line.find("p:TextEquiv/p:Unicode", ns).text == page.lines[0].text
    assert doc.find("p:Page", ns).get("readingDirection") == "right-to-left"


def test_hocr_lines_carry_bbox_baseline_and_confidence(page):
    doc = etree.fromstring(page.to_hocr().encode())
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    lines = doc.findall(".//h:span[@class='ocr_line']", ns)
    assert len(lines) == len(page.lines)
    assert re.search(r"bbox \d+ \d+ \d+ \d+; baseline -?[\d.]+ -?\d+; x_wconf \d+", lines[0].get("title"))
    assert all(p.get("dir") == "rtl" for p in doc.findall(".//h:p", ns))
    words = [w.text for w in lines[0].findall("h:span", ns)]
    assert " ".join(words) == page.lines[0].text


def test_xml_formats_hold_a_file_name_with_characters_xml_cannot(page):
    """A Linux file name may hold C0 controls, and bytes that are not UTF-8 (lone surrogates in Python):
    XML 1.0 cannot hold them even escaped, so ALTO, PAGE-XML and hOCR write U+FFFD in their place."""
    named = dataclasses.replace(page, image_name="scan\x01one\x0b\udcff.png")
    alto = etree.fromstring(named.to_alto().encode())
    _schema("alto-4-4.xsd").assertValid(alto)
    ns = {"a": "http://www.loc.gov/standards/alto/ns-v4#"}
    assert alto.find(".//a:fileName", ns).text == "scan\ufffdone\ufffd\ufffd.png"
    page_xml = etree.fromstring(named.to_page_xml().encode())
    _schema("pagecontent-2019-07-15.xsd").assertValid(page_xml)
    ns = {"p": "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"}
    assert page_xml.find("p:Page", ns).get("imageFilename") == "scan\ufffdone\ufffd\ufffd.png"
    hocr = etree.fromstring(named.to_hocr().encode())
    assert hocr.find(".//{http://www.w3.org/1999/xhtml}title").text == "scan\ufffdone\ufffd\ufffd.png"


def test_hocr_escapes_quotes_and_backslashes_in_the_image_property(page):
    named = dataclasses.replace(page, image_name='say "hi"\\x.png')
    hocr = etree.fromstring(named.to_hocr().encode())
    title = hocr.find(".//{http://www.w3.org/1999/xhtml}div[@class='ocr_page']").get("title")
    assert title.startswith('image "say \\"hi\\"\\\\x.png"; bbox ')


def test_geometry_of_a_skewed_page_cropped_close_to_its_text_stays_on_the_page(recognizer):
    """Lines of a turned page, boxed on the levelled page, reach past the original's corners when the page
    is cropped close to its text: every point is clipped to the page (PAGE-XML allows no negative
    coordinate), in the result itself, so that every format and the service's stored lines agree."""
    spec = PageSpec(width=900, height=420, body_lines=3, header=False, heading=False, margin_numbers=False,
                    footnotes=0, seed=2, skew_degrees=4.0)
    grey = render_page(spec, WORDS[34:] + WORDS).image
    ys, xs = np.nonzero(grey < 128)
    grey = grey[max(0, ys.min() - 1): ys.max() + 2, max(0, xs.min() - 1): xs.max() + 2]
    cropped = recognize_page(grey, recognizer, image_name="skewed.png")
    height, width = grey.shape
    assert cropped.lines and (cropped.width, cropped.height) == (width, height)
    shapes = [region.polygon for region in cropped.regions]
    shapes += [shape for line in cropped.lines for shape in (line.polygon, line.baseline)]
    assert all(0 <= x < width and 0 <= y < height for shape in shapes for x, y in shape)
    # cropped to its text: its lines reach its edges (where, unclipped, the turned boxes passed them)
    assert any(x in (0, width - 1) or y in (0, height - 1) for shape in shapes for x, y in shape)
    _schema("pagecontent-2019-07-15.xsd").assertValid(etree.fromstring(cropped.to_page_xml().encode()))
    _schema("alto-4-4.xsd").assertValid(etree.fromstring(cropped.to_alto().encode()))
    stored = cropped.to_dict()["regions"]
    assert [line["polygon"] for region in stored for line in region["lines"]] == [
        [list(p) for p in line.polygon] for line in cropped.lines]


def test_a_blank_page_gives_no_lines_in_every_format(recognizer):
    blank = recognize_page(np.full((1400, 1000), 250, np.uint8), recognizer)
    assert blank.regions == [] and blank.to_text() == ""
    _schema("alto-4-4.xsd").assertValid(etree.fromstring(blank.to_alto().encode()))
    _schema("pagecontent-2019-07-15.xsd").assertValid(etree.fromstring(blank.to_page_xml().encode()))


# -- loading pages --------------------------------------------------------------

def test_multi_page_tiff_and_pdf_give_every_page(rendered):
    first = Image.fromarray(rendered.image)
    second = Image.fromarray(255 - (255 - rendered.image) // 2)
    tiff = io.BytesIO()
    first.save(tiff, format="TIFF", save_all=True, append_images=[second], dpi=(300, 300))
    pages = list(iter_pages(tiff.getvalue()))
    assert [p.number for p in pages] == [1, 2] and pages[0].dpi == 300
    assert np.array_equal(pages[0].grey, rendered.image)

    pdf = io.BytesIO()
    first.save(pdf, format="PDF", save_all=True, append_images=[second], resolution=150)
    pages = list(iter_pages(pdf.getvalue()))
    assert len(pages) == 2 and pages[0].dpi == 300
    # 150-dpi images rendered at 300 dpi: twice the pixels each way
    assert abs(pages[0].grey.shape[0] - 2 * rendered.image.shape[0]) <= 2


def _open_files() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_a_page_of_a_file_given_by_its_path_is_the_page_given_by_its_bytes(rendered, tmp_path):
    """Jobs read a stored book by its path (a PDF's renderer opens it, a TIFF is read up to the frame wanted): the
    same pages, numbers, dpi and errors as from the bytes of an upload, and no file left open."""
    first = Image.fromarray(rendered.image)
    second = Image.fromarray(255 - (255 - rendered.image) // 2)
    third = first.transpose(Image.Transpose.ROTATE_90)
    for fmt, options in (("TIFF", {"dpi": (300, 300)}), ("PDF", {"resolution": 150})):
        path = tmp_path / f"book.{fmt.lower()}"
        first.save(path, format=fmt, save_all=True, append_images=[second, third], **options)
        data = path.read_bytes()
        load_page(data, 1)   # the PDF renderer's forkserver, started once, holds two pipes of its own
        opened = _open_files()
        for source in (path, str(path)):
            assert count_pages(source) == 3
            for number in (1, 2, 3):
                by_path, by_bytes = load_page(source, number), load_page(data, number)
                assert (by_path.number, by_path.dpi) == (by_bytes.number, by_bytes.dpi) == (number, 300)
                assert np.array_equal(by_path.grey, by_bytes.grey), (fmt, number)
            assert [(p.number, p.grey.shape) for p in iter_pages(source)] == \
                [(p.number, p.grey.shape) for p in iter_pages(data)]
            with pytest.raises(ImageError) as error:
                load_page(source, 4)
            assert error.value.code == "no_such_page"
        assert _open_files() == opened, fmt
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    for load in (lambda: load_page(empty, 1), lambda: next(iter_pages(empty))):
        with pytest.raises(ImageError) as error:
            load()
        assert error.value.code == "empty_file"


@pytest.mark.parametrize("data, code", [(b"", "empty_file"), (b"not an image at all", "not_an_image"),
                                        (b"%PDF-1.7 garbage", "corrupt_pdf")])
def test_unreadable_inputs_get_clear_errors(data, code):
    with pytest.raises(ImageError) as error:
        list(iter_pages(data))
    assert error.value.code == code


def test_page_pixel_limit_is_enforced():
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000), 255).save(buffer, format="PNG")
    with pytest.raises(ImageError) as error:
        list(iter_pages(buffer.getvalue(), max_pixels=1_000_000))
    assert error.value.code == "image_too_large"


def test_a_gif_frame_beyond_pillows_bomb_limit_fails_its_page_not_the_caller():
    """Pillow sizes a GIF's later frames only when it seeks them, and raises its bomb error from there."""
    frames = [Image.new("L", (20, 20), level) for level in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    data = bytearray(buffer.getvalue())
    second = data.rfind(b"\x2c\x00\x00\x00\x00\x14\x00\x14\x00")   # the last image descriptor: at 0,0, 20x20
    data[second + 5:second + 9] = struct.pack("<HH", 65535, 65535)
    for load in (lambda: count_pages(bytes(data)), lambda: list(iter_pages(bytes(data))),
                 lambda: load_page(bytes(data), 2)):
        with pytest.raises(ImageError) as error:
            load()
        assert error.value.code == "image_too_large" and "page 2" in error.value.message


def _png_header(width: int, height: int) -> bytes:
    """A grey PNG's header claiming ``width`` x ``height`` (its pixel data empty: enough to be counted)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_the_page_pixel_limit_set_is_the_limit_even_above_pillows_bomb_warning():
    """A deployment may allow pages past Pillow's MAX_IMAGE_PIXELS (89 M; large newspaper or map scans): the
    page loaders' own limit decides up to Pillow's hard refusal at twice that, and a refusal names that limit."""
    page = _png_header(10_000, 10_000)   # 100 M pixels: past Pillow's warning, short of its error
    assert Image.MAX_IMAGE_PIXELS < 100_000_000 < 2 * Image.MAX_IMAGE_PIXELS
    assert count_pages(page, max_pixels=150_000_000) == 1
    with pytest.raises(ImageError) as refused:
        count_pages(page, max_pixels=60_000_000)
    assert refused.value.code == "image_too_large"
    assert refused.value.message == "page 1 is 10000x10000 = 100000000 pixels; the limit is 60000000"
    with pytest.raises(ImageError) as past_pillow:
        count_pages(_png_header(20_000, 20_000), max_pixels=500_000_000)
    assert past_pillow.value.message == (f"the image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels; the limit "
                                         f"is {2 * Image.MAX_IMAGE_PIXELS}")
