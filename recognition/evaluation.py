"""Scoring recognised lines against their transcriptions, per source (book) and overall."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .line_data import LineSample
from .metrics import ErrorCounter
from .text import normalize_text

ALL = "all"


@dataclass
class Evaluation:
    """What ``Recognizer.evaluate`` returns: readings and error counts.

    Both sides are normalised (``normalize_text``) before comparing. A line
    that could not be read counts as an empty reading and is listed in
    ``unreadable``.
    """

    samples: list[LineSample] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    unreadable: list[tuple[LineSample, str]] = field(default_factory=list)  # (sample, error code)
    by_source: dict[str, ErrorCounter] = field(default_factory=lambda: defaultdict(ErrorCounter))

    def add(self, samples: Sequence[LineSample], outcomes: Sequence) -> None:
        for sample, outcome in zip(samples, outcomes, strict=True):
            text = getattr(outcome, "text", None)
            if text is None:
                self.unreadable.append((sample, outcome.code))
                text = ""
            reference, hypothesis = normalize_text(sample.text), normalize_text(text)
            self.samples.append(sample)
            self.references.append(reference)
            self.hypotheses.append(hypothesis)
            for key in (sample.source, ALL):
                self.by_source[key].add(reference, hypothesis)

    @property
    def lines(self) -> int:
        return self.by_source[ALL].lines if ALL in self.by_source else 0

    @property
    def cer(self) -> float:
        return self.by_source[ALL].cer

    @property
    def wer(self) -> float:
        return self.by_source[ALL].wer

    def table(self) -> dict[str, dict]:
        """Lines, characters, CER and WER per source, ``all`` last."""
        return {source: {"lines": c.lines, "chars": c.chars, "cer": round(c.cer, 5), "wer": round(c.wer, 5)}
                for source, c in sorted(self.by_source.items(), key=lambda item: (item[0] == ALL, item[0]))}
