"""The model's symbol set: characters <-> class indices, with the CTC blank at 0."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence

BLANK_INDEX = 0


class UnknownCharacterError(ValueError):
    def __init__(self, characters: set[str]):
        self.characters = characters
        listing = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in sorted(characters))
        super().__init__(f"characters outside the alphabet: {listing}")


class Alphabet:
    """An ordered set of characters; class ``i + 1`` is ``characters[i]``.

    Blank sits at index 0 so that growing the alphabet (fine-tuning on data
    with new characters) appends classes without renumbering the old ones.
    """

    def __init__(self, characters: Sequence[str]):
        if len(set(characters)) != len(characters):
            raise ValueError("alphabet characters must be unique")
        if any(len(c) != 1 for c in characters):
            raise ValueError("alphabet entries must be single code points")
        self.characters: tuple[str, ...] = tuple(characters)
        self._index = {c: i + 1 for i, c in enumerate(self.characters)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Alphabet:
        counts = Counter()
        for text in texts:
            counts.update(text)
        return cls(sorted(counts))

    @classmethod
    def from_json(cls, data: str) -> Alphabet:
        return cls(json.loads(data))

    def to_json(self) -> str:
        return json.dumps(list(self.characters), ensure_ascii=False)

    def extended(self, texts: Iterable[str], min_count: int = 1) -> Alphabet:
        """This alphabet plus the new characters seen at least ``min_count`` times in ``texts``,
        old indices kept."""
        counts = Counter(c for t in texts for c in t)
        new = sorted(c for c, n in counts.items() if n >= min_count and c not in set(self.characters))
        return Alphabet(self.characters + tuple(new))

    @property
    def num_classes(self) -> int:
        """Characters plus the blank: the width of the model's softmax."""
        return len(self.characters) + 1

    def __len__(self) -> int:
        return len(self.characters)

    def __contains__(self, char: str) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alphabet) and other.characters == self.characters

    def unknown(self, text: str) -> set[str]:
        return {c for c in text if c not in self._index}

    def encode(self, text: str) -> list[int]:
        missing = self.unknown(text)
        if missing:
            raise UnknownCharacterError(missing)
        return [self._index[c] for c in text]

    def decode(self, indices: Iterable[int]) -> str:
        return "".join(self.characters[i - 1] for i in indices if i != BLANK_INDEX)
