"""Which of a book's lines play the reviewer's corrections in ``bench.adaptation``.

``first``: the first N lines in file order. ``lowest-confidence``: the N lines of a pool (the lines before
``--evaluate-after``) that the base model is least sure of, as the review workspace lists them
(``ocr_app.review.selectors.worst_first``: line confidence, lowest first), so the lines a reviewer
corrects before pressing "Adapt". The pool is read as serving reads it: ``Recognizer`` on the model
file, its own calibration, greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recognition.evaluation import Evaluation
from recognition.metrics import ErrorCounter

CHOICES = ("first", "lowest-confidence")


@dataclass(frozen=True)
class PoolReading:
    """The base model's reading of the pool: each line's confidence and normalised reference/reading."""

    samples: list
    confidences: list[float]
    references: list[str]
    hypotheses: list[str]

    def cer(self, indices) -> float:
        counter = ErrorCounter()
        for i in indices:
            counter.add(self.references[i], self.hypotheses[i])
        return counter.cer

    def lowest_confidence(self, count: int) -> list[int]:
        """The ``count`` least confident lines (ties: the earlier line first), in file order."""
        if count > len(self.samples):
            raise ValueError(f"{count} lines asked for from a pool of {len(self.samples)}")
        ranked = sorted(range(len(self.samples)), key=lambda i: (self.confidences[i], i))
        return sorted(ranked[:count])


def read_pool(base: str | Path, pool: list) -> PoolReading:
    # Imported here: the service benches import bench.adaptation and must not load the recogniser with it
    # (tests/test_bench_lines.py).
    from recognition.recognizer import Recognizer

    outcomes = Recognizer(base).recognize([s.image_path for s in pool])
    evaluation = Evaluation()
    evaluation.add(pool, outcomes)
    # An unreadable line is stored with confidence 0 by the service (ocr_app.books.services): first in the queue.
    confidences = [float(getattr(o, "confidence", 0.0)) for o in outcomes]
    return PoolReading(pool, confidences, evaluation.references, evaluation.hypotheses)


def describe(reading: PoolReading, chosen: list[int], first: int) -> dict:
    """What the JSON records of one N's chosen lines: which, how hard for the base, and the first N beside them."""
    return {"lines": [Path(reading.samples[i].image_path).name for i in chosen],
            "base_cer": reading.cer(chosen), "first_n_base_cer": reading.cer(range(first)),
            "max_confidence": max(reading.confidences[i] for i in chosen) if chosen else None,
            "in_first_n": sum(i < first for i in chosen)}
