"""hOCR 1.2 (XHTML): ocr_page > ocr_carea > ocr_par (dir="rtl") > ocr_line with
bbox, baseline and x_wconf, and ocrx_word with x_wconf."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .words import SOFTWARE, words, xml_text

XHTML = "http://www.w3.org/1999/xhtml"


def _baseline(line) -> str:
    """hOCR baseline: slope, and offset from the box's bottom-left corner."""
    (xa, ya), (xb, yb) = line.baseline
    slope = (yb - ya) / (xb - xa) if xb != xa else 0.0
    x0, _, _, y1 = line.bbox
    offset = ya + slope * (x0 - xa) - y1
    return f"baseline {slope:.4f} {round(offset)}"


def _bbox(box) -> str:
    return "bbox {} {} {} {}".format(*box)


def page_hocr(page) -> str:
    ET.register_namespace("", XHTML)
    q = lambda tag: f"{{{XHTML}}}{tag}"  # noqa: E731
    html = ET.Element(q("html"), {"lang": "ar", "{http://www.w3.org/XML/1998/namespace}lang": "ar"})
    head = ET.SubElement(html, q("head"))
    ET.SubElement(head, q("title")).text = xml_text(page.image_name)
    ET.SubElement(head, q("meta"), {"http-equiv": "Content-Type", "content": "text/html;charset=utf-8"})
    ET.SubElement(head, q("meta"), name="ocr-system", content=SOFTWARE)
    ET.SubElement(head, q("meta"), name="ocr-capabilities",
                  content="ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf")
    body = ET.SubElement(html, q("body"))
    # hOCR's quoted property strings escape " and \ with a backslash: a name holding either ended the string early
    image = xml_text(page.image_name).replace("\\", "\\\\").replace('"', '\\"')
    ocr_page = ET.SubElement(body, q("div"), {"class": "ocr_page", "id": "page_1",
                                              "title": f'image "{image}"; bbox 0 0 {page.width} {page.height}'})
    for region in page.regions:
        area = ET.SubElement(ocr_page, q("div"), {"class": "ocr_carea", "id": f"block_{region.id}",
                                                  "title": _bbox(region.bbox), "data-kind": str(region.kind)})
        par = ET.SubElement(area, q("p"), {"class": "ocr_par", "id": f"par_{region.id}", "dir": "rtl",
                                           "lang": "ar", "title": _bbox(region.bbox)})
        for line in region.lines:
            span = ET.SubElement(par, q("span"), {
                "class": "ocr_line", "id": f"line_{line.id}",
                "title": f"{_bbox(line.bbox)}; {_baseline(line)}; x_wconf {round(line.confidence * 100)}"})
            previous = None
            for i, word in enumerate(words(line.characters)):
                element = ET.SubElement(span, q("span"), {"class": "ocrx_word", "id": f"word_{line.id}_{i + 1}",
                                                          "title": f"x_wconf {round(word.confidence * 100)}"})
                element.text = word.text
                if previous is not None:
                    previous.tail = " "
                previous = element
    ET.indent(html)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
            '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
            + ET.tostring(html, encoding="unicode") + "\n")
