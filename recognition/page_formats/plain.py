"""The JSON structure (regions -> lines -> characters) and plain text."""

from __future__ import annotations


def page_dict(page) -> dict:
    return {
        "width": page.width,
        "height": page.height,
        "skew_degrees": page.skew_degrees,
        "model": dict(page.model),
        "text": page_text(page),
        "regions": [
            {
                "id": region.id,
                "kind": str(region.kind),
                "polygon": [list(p) for p in region.polygon],
                "lines": [
                    {
                        "id": line.id,
                        "polygon": [list(p) for p in line.polygon],
                        "baseline": [list(p) for p in line.baseline],
                        "x_height": line.x_height,
                        "text": line.text,
                        "confidence": line.confidence,
                        "characters": [{"char": c.char, "confidence": c.confidence} for c in line.characters],
                    }
                    for line in region.lines
                ],
            }
            for region in page.regions
        ],
    }


def page_text(page) -> str:
    """Lines in reading order, one per line; a blank line between regions."""
    blocks = ["\n".join(line.text for line in region.lines) for region in page.regions]
    return "\n\n".join(blocks) + ("\n" if blocks else "")
