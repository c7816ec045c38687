"""Greedy (best-path) CTC decoding with confidences.

Definitions, so clients know what the numbers mean:

* A character's confidence is the highest softmax probability its class
  reached over the consecutive frames that emitted it.
* A line's confidence is the geometric mean, over all frames, of the best
  path's per-frame probability (blank frames included): ``exp(mean(log p))``.
  It equals the best path's probability normalised for line length, so long
  and short lines are comparable, and one unsure frame pulls it down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .alphabet import BLANK_INDEX, Alphabet
from .text import reading_order_permutation


@dataclass(frozen=True)
class DecodedLine:
    """Decoded symbols in the model's reading order."""

    labels: tuple[int, ...]
    char_confidences: tuple[float, ...]
    confidence: float


def greedy_decode(probs: np.ndarray) -> DecodedLine:
    """Decode one line's (frames x classes) probability matrix."""
    if probs.ndim != 2:
        raise ValueError(f"expected (frames, classes), got shape {probs.shape}")
    if probs.shape[0] == 0:
        return DecodedLine((), (), 0.0)
    best = probs.argmax(axis=1)
    best_p = probs[np.arange(len(best)), best].astype(np.float64)
    confidence = float(np.exp(np.mean(np.log(np.maximum(best_p, 1e-12)))))

    labels: list[int] = []
    confidences: list[float] = []
    previous = BLANK_INDEX
    for label, p in zip(best.tolist(), best_p.tolist()):
        if label != BLANK_INDEX:
            if label != previous:
                labels.append(label)
                confidences.append(p)
            else:
                confidences[-1] = max(confidences[-1], p)
        previous = label
    return DecodedLine(tuple(labels), tuple(confidences), confidence)


@dataclass(frozen=True)
class CharacterResult:
    char: str
    confidence: float


@dataclass(frozen=True)
class LineResult:
    """Recognised text in logical Unicode order, with confidences (see ``ctc``)."""

    text: str
    confidence: float
    characters: tuple[CharacterResult, ...]


def decode_line(probs: np.ndarray, alphabet: Alphabet, mirrored: bool = True) -> LineResult:
    """One line's softmax output -> text in logical order, confidences moved along.

    A mirrored model emits symbols in right-to-left reading order; the reading
    order permutation (its own inverse) puts left-to-right runs back.
    """
    decoded = greedy_decode(probs)
    chars = [alphabet.characters[label - 1] for label in decoded.labels]
    order = reading_order_permutation("".join(chars)) if mirrored else list(range(len(chars)))
    characters = tuple(CharacterResult(chars[i], round(decoded.char_confidences[i], 4)) for i in order)
    return LineResult(text="".join(c.char for c in characters), confidence=round(decoded.confidence, 4),
                      characters=characters)
