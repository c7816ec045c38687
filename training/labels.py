"""Texts -> alphabets and CTC label sequences: one rule for preprocess and train."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from recognition.alphabet import Alphabet
from recognition.text import reading_order

# Characters rarer than this in the training texts stay out of the alphabet
# (with their lines): a class seen once or twice is noise, not a letter.
DEFAULT_MIN_CHAR_COUNT = 2


def alphabet_from_texts(texts: Iterable[str], min_count: int = DEFAULT_MIN_CHAR_COUNT) -> Alphabet:
    counts = Counter(c for text in texts for c in text)
    return Alphabet(sorted(c for c, n in counts.items() if n >= min_count))


def encode_labels(text: str, alphabet: Alphabet) -> np.ndarray:
    """A normalised logical-order text -> class indices in the model's reading order.

    Characters outside the alphabet are dropped (held-out lines may have them;
    their CER counts them as errors).
    """
    known = "".join(c for c in reading_order(text) if c in alphabet)
    return np.array(alphabet.encode(known), np.int32)
