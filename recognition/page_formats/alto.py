"""ALTO v4.4: TextBlock per region, TextLine with baseline, String with WC and CC.

Region roles are LayoutTags (ALTO has no fixed list of them); blocks and lines
declare BASEDIRECTION="rtl". CC follows ALTO: one digit per character, 0 sure
to 9 unsure, space-separated.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .words import SOFTWARE, points, words, xml_text

NS = "http://www.loc.gov/standards/alto/ns-v4#"
SCHEMA = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _box(element: ET.Element, bbox) -> None:
    x0, y0, x1, y1 = bbox
    element.set("HPOS", str(x0))
    element.set("VPOS", str(y0))
    element.set("WIDTH", str(x1 - x0))
    element.set("HEIGHT", str(y1 - y0))


def _uncertainty(confidence: float) -> str:
    return str(min(9, max(0, round((1.0 - confidence) * 9))))


def page_alto(page) -> str:
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", XSI)
    q = lambda tag: f"{{{NS}}}{tag}"  # noqa: E731
    alto = ET.Element(q("alto"), {f"{{{XSI}}}schemaLocation": f"{NS} {SCHEMA}"})
    description = ET.SubElement(alto, q("Description"))
    ET.SubElement(description, q("MeasurementUnit")).text = "pixel"
    source = ET.SubElement(description, q("sourceImageInformation"))
    ET.SubElement(source, q("fileName")).text = xml_text(page.image_name)
    processing = ET.SubElement(description, q("OCRProcessing"), ID="OCR_0")
    step = ET.SubElement(processing, q("ocrProcessingStep"))
    software = ET.SubElement(step, q("processingSoftware"))
    ET.SubElement(software, q("softwareName")).text = SOFTWARE
    if page.model:
        ET.SubElement(software, q("softwareVersion")).text = f"{page.model.get('name')} {page.model.get('version')}"

    kinds = sorted({str(region.kind) for region in page.regions})
    if kinds:
        tags = ET.SubElement(alto, q("Tags"))
        for kind in kinds:
            ET.SubElement(tags, q("LayoutTag"), ID=f"TAG_{kind}", LABEL=kind)

    layout = ET.SubElement(alto, q("Layout"))
    alto_page = ET.SubElement(layout, q("Page"), ID="PAGE_1", PHYSICAL_IMG_NR="1",
                              WIDTH=str(page.width), HEIGHT=str(page.height))
    space = ET.SubElement(alto_page, q("PrintSpace"))
    _box(space, (0, 0, page.width, page.height))
    for region in page.regions:
        block = ET.SubElement(space, q("TextBlock"), ID=f"BLOCK_{region.id}", TAGREFS=f"TAG_{region.kind}",
                              LANG="ar", BASEDIRECTION="rtl")
        _box(block, region.bbox)
        ET.SubElement(ET.SubElement(block, q("Shape")), q("Polygon"), POINTS=points(region.polygon))
        for line in region.lines:
            text_line = ET.SubElement(block, q("TextLine"), ID=f"LINE_{line.id}", BASEDIRECTION="rtl")
            _box(text_line, line.bbox)
            text_line.set("BASELINE", points(line.baseline))
            ET.SubElement(ET.SubElement(text_line, q("Shape")), q("Polygon"), POINTS=points(line.polygon))
            line_words = words(line.characters) or []
            if not line_words:   # ALTO wants at least one String per line
                ET.SubElement(text_line, q("String"), CONTENT="", WC="0")
            for i, word in enumerate(line_words):
                if i:
                    ET.SubElement(text_line, q("SP"))
                ET.SubElement(text_line, q("String"), ID=f"STR_{line.id}_{i + 1}", CONTENT=word.text,
                              WC=f"{word.confidence:.4f}",
                              CC=" ".join(_uncertainty(c) for c in word.confidences))
    ET.indent(alto)
    return ET.tostring(alto, encoding="unicode", xml_declaration=True) + "\n"
