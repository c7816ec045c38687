"""A PageResult written out: JSON-ready dict, plain text, ALTO 4, PAGE-XML 2019, hOCR.

Standard library only (xml.etree), so serving needs nothing more. Every
format keeps text in logical Unicode order and declares right-to-left where
the format has a place for it.
"""

from .alto import page_alto
from .hocr import page_hocr
from .pagexml import page_xml
from .plain import page_dict, page_text

# The file name suffix of each format, wherever a page's outputs are written as files.
FORMAT_SUFFIXES = {"txt": ".txt", "json": ".json", "alto": ".alto.xml", "page": ".page.xml", "hocr": ".hocr"}

# The media type each format is served with.
MEDIA_TYPES = {"txt": "text/plain", "json": "application/json", "alto": "application/xml",
               "page": "application/xml", "hocr": "application/xhtml+xml"}

__all__ = ["FORMAT_SUFFIXES", "MEDIA_TYPES", "page_alto", "page_dict", "page_hocr", "page_text", "page_xml"]
