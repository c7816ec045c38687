"""Greedy (best-path) CTC decoding with confidences.

Definitions, so clients know what the numbers mean (README, "Confidences"):

* A character's raw score is the highest softmax probability its class
  reached over the consecutive frames that emitted it.
* A line's raw score estimates the chance that it holds no error at all,
  ``exp(-E)``, where ``E`` is its expected number of errors: for each emitted
  character, the chance it is wrong (``1 - raw score``), plus for each gap
  between emitted characters the largest probability, over the gap's frames,
  of a character that was not emitted there (mass on neither blank nor the
  neighbouring characters' classes): a character the best path dropped. So a
  line is as unsure as its unsure characters and gaps, however many easy blank
  frames it has (the old geometric mean over all frames was dominated by them).
* A model calibrated by ``training.calibrate`` carries monotone maps in its
  metadata (``recognition.calibration``) that turn the raw scores into
  probabilities measured on a held-out book: a character's confidence is then
  the probability that it is right, a line's the probability that the whole
  line is right. An uncalibrated model reports the raw scores. The maps are
  monotone, so the order of confidences is the same either way.
* A model adapted to one book may carry that book's transcription conventions
  (``recognition.conventions``: a space before "." or none before ")"); they
  are applied last, to the characters in logical order. A space they add has
  the chance it is right as its confidence; the line's confidence is the
  model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .alphabet import BLANK_INDEX, Alphabet
from .calibration import ConfidenceCalibration
from .conventions import TranscriptionConventions
from .text import logical_order_permutation


@dataclass(frozen=True)
class DecodedLine:
    """Decoded symbols in the model's reading order."""

    labels: tuple[int, ...]
    char_confidences: tuple[float, ...]
    confidence: float  # exp(-expected_errors)
    expected_errors: float = 0.0


def run_starts(best: np.ndarray) -> np.ndarray:
    """The frames where a run of one class begins on the best path (the first frame always does)."""
    change = np.empty(len(best), bool)
    change[:1] = True
    np.not_equal(best[1:], best[:-1], out=change[1:])
    return change.nonzero()[0]


def dropped_character_chances(probs: np.ndarray, best: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """For each gap between emitted characters (blank on the best path), the chance it hides one.

    The largest probability, over the gap's frames, that is on neither the blank
    nor the class of the character emitted just before or just after the gap;
    mass on those is the same character spread over more frames, not a new one.
    A gap is a run of blank frames; ``starts`` (``run_starts(best)``) may be passed if known.
    """
    starts = run_starts(best) if starts is None else starts
    # Few, plain NumPy calls: the decoder runs right after the model, whose work has pushed it out of the
    # CPU's caches, and each call (NumPy's Python-level wrappers most) costs several microseconds then.
    run_labels = best[starts]
    gaps = (run_labels == BLANK_INDEX).nonzero()[0]
    if gaps.size == 0:
        return np.zeros(0)
    # Runs alternate between characters and gaps: a gap's neighbours are the runs beside it (blank at the ends).
    around = np.full(len(run_labels) + 2, BLANK_INDEX, run_labels.dtype)
    around[1:-1] = run_labels
    before, after = around[gaps], around[gaps + 2]
    after[after == before] = BLANK_INDEX  # one character's class is counted once
    ends = np.empty_like(starts)
    ends[:-1], ends[-1] = starts[1:], len(best)
    lengths = ends[gaps] - starts[gaps]
    frames = (best == BLANK_INDEX).nonzero()[0]  # the gaps' frames, gap by gap
    frame_before, frame_after = before.repeat(lengths), after.repeat(lengths)
    other = 1.0 - probs[frames, BLANK_INDEX].astype(np.float64)
    other -= np.where(frame_before != BLANK_INDEX, probs[frames, frame_before], 0.0)
    other -= np.where(frame_after != BLANK_INDEX, probs[frames, frame_after], 0.0)
    worst = np.maximum.reduceat(other, lengths.cumsum() - lengths)
    return np.minimum(np.maximum(worst, 0.0), 1.0)


def greedy_decode(probs: np.ndarray) -> DecodedLine:
    """Decode one line's (frames x classes) probability matrix: the best path."""
    if probs.ndim != 2:
        raise ValueError(f"expected (frames, classes), got shape {probs.shape}")
    if probs.shape[0] == 0:
        return DecodedLine((), (), 0.0)
    return decode_path(probs, probs.argmax(axis=1))


def decode_path(probs: np.ndarray, best: np.ndarray) -> DecodedLine:
    """The characters of one frame path (a class per frame) and their confidences (module docstring).

    Greedy decoding takes the best path; a beam search the best path of the labels it chose
    (``recognition.beam_search``), so the confidences mean the same whichever decoded.
    """
    # A run of frames on one class is one emission (a blank between two runs of a class keeps them
    # apart); a character's score is the best frame of its run (float32 values, exactly as they become
    # Python floats).
    starts = run_starts(best)
    run_labels = best[starts]
    run_scores = np.maximum.reduceat(probs[np.arange(len(best)), best], starts)
    emitted = run_labels != BLANK_INDEX
    labels = run_labels[emitted].tolist()
    confidences = run_scores[emitted].tolist()
    expected_errors = float(sum(1.0 - c for c in confidences) + dropped_character_chances(probs, best, starts).sum())
    return DecodedLine(tuple(labels), tuple(confidences), float(np.exp(-expected_errors)), expected_errors)


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


def decode_line(probs: np.ndarray, alphabet: Alphabet, mirrored: bool = True,
                calibration: ConfidenceCalibration | None = None,
                conventions: TranscriptionConventions | None = None,
                decoder: Callable[[np.ndarray], DecodedLine] | None = None) -> LineResult:
    """One line's softmax output -> text in logical order, confidences moved along.

    ``decoder`` chooses the labels (default ``greedy_decode``; ``recognition.beam_search``
    with a language model). A mirrored model emits symbols in right-to-left reading order;
    ``logical_order_permutation`` puts left-to-right runs back. With a
    ``calibration`` (the model's own), confidences are probabilities; without,
    raw scores. ``conventions`` (the model's own, if it has any) then set the
    spaces around punctuation as the model's book transcribes them.
    """
    decoded = (decoder or greedy_decode)(probs)
    chars = [alphabet.characters[label - 1] for label in decoded.labels]
    char_confidences = np.asarray(decoded.char_confidences, np.float64)
    confidence = decoded.confidence
    if calibration is not None:
        char_confidences = calibration.character(char_confidences)
        confidence = float(calibration.line(confidence))
    logical_chars, logical_confidences = chars, char_confidences.tolist()
    if mirrored:
        order = logical_order_permutation("".join(chars))
        logical_chars = [chars[i] for i in order]
        logical_confidences = [logical_confidences[i] for i in order]
    if conventions:
        logical_chars, logical_confidences = conventions.apply(logical_chars, logical_confidences)
    characters = tuple(map(CharacterResult, logical_chars, [round(p, 4) for p in logical_confidences]))
    return LineResult(text="".join(logical_chars), confidence=round(confidence, 4), characters=characters)
