"""PAGE-XML 2019-07-15: TextRegion per region (typed), TextLine with Coords,
Baseline and TextEquiv/@conf, a ReadingOrder, right-to-left declared."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from ..layout import RegionKind
from .words import SOFTWARE, points, xml_text

NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
SCHEMA = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15/pagecontent.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

REGION_TYPES = {
    RegionKind.HEADER: "header",
    RegionKind.PAGE_NUMBER: "page-number",
    RegionKind.MAIN: "paragraph",
    RegionKind.MARGINAL_NOTE: "marginalia",
    RegionKind.MARGINAL_NUMBER: "marginalia",
    RegionKind.FOOTNOTE: "footnote",
}


def page_xml(page) -> str:
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", XSI)
    q = lambda tag: f"{{{NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("PcGts"), {f"{{{XSI}}}schemaLocation": f"{NS} {SCHEMA}"})
    metadata = ET.SubElement(root, q("Metadata"))
    ET.SubElement(metadata, q("Creator")).text = SOFTWARE
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    ET.SubElement(metadata, q("Created")).text = now
    ET.SubElement(metadata, q("LastChange")).text = now
    xml_page = ET.SubElement(root, q("Page"), imageFilename=xml_text(page.image_name), imageWidth=str(page.width),
                             imageHeight=str(page.height), readingDirection="right-to-left",
                             textLineOrder="top-to-bottom", primaryLanguage="Arabic")
    if page.regions:
        order = ET.SubElement(ET.SubElement(xml_page, q("ReadingOrder")), q("OrderedGroup"), id="reading-order")
        for index, region in enumerate(page.regions):
            ET.SubElement(order, q("RegionRefIndexed"), index=str(index), regionRef=region.id)
    for region in page.regions:
        text_region = ET.SubElement(xml_page, q("TextRegion"), id=region.id, type=REGION_TYPES[region.kind],
                                    readingDirection="right-to-left", textLineOrder="top-to-bottom",
                                    custom=f"structure {{type:{region.kind};}}")
        ET.SubElement(text_region, q("Coords"), points=points(region.polygon))
        for line in region.lines:
            text_line = ET.SubElement(text_region, q("TextLine"), id=line.id, readingDirection="right-to-left")
            ET.SubElement(text_line, q("Coords"), points=points(line.polygon))
            ET.SubElement(text_line, q("Baseline"), points=points(line.baseline))
            equiv = ET.SubElement(text_line, q("TextEquiv"), conf=f"{line.confidence:.4f}")
            ET.SubElement(equiv, q("Unicode")).text = line.text
        equiv = ET.SubElement(text_region, q("TextEquiv"))
        ET.SubElement(equiv, q("Unicode")).text = "\n".join(line.text for line in region.lines)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
