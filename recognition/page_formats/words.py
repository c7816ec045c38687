"""Split a recognised line into words with their characters' confidences."""

from __future__ import annotations

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
