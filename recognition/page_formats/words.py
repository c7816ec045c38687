"""Split a recognised line into words with their characters' confidences."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..ctc import CharacterResult

SOFTWARE = "arabic-ocr"


@dataclass(frozen=True)
class Word:
    text: str
    confidences: tuple[float, ...]

    @property
    def confidence(self) -> float:
        """The word's confidence: its least sure character (one bad letter makes a wrong word)."""
        return min(self.confidences) if self.confidences else 0.0


def words(characters: tuple[CharacterResult, ...]) -> list[Word]:
    out: list[Word] = []
    text, confs = [], []
    for ch in (*characters, CharacterResult(" ", 1.0)):
        if ch.char.isspace():
            if text:
                out.append(Word("".join(text), tuple(confs)))
            text, confs = [], []
        else:
            text.append(ch.char)
            confs.append(ch.confidence)
    return out


def points(polygon) -> str:
    return " ".join(f"{x},{y}" for x, y in polygon)


# What XML 1.0 cannot hold, not even as a character reference: C0 controls but tab, newline and carriage return,
# lone surrogates (a file name that is not UTF-8, as Python decodes it) and U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold replaced by U+FFFD: what any text that does not come
    from the recogniser (a file name) goes through before it is put into ALTO, PAGE-XML or hOCR."""
    return _NOT_XML.sub("\ufffd", text)
