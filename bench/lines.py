"""The lines a bench reads: those of the sources asked for, in the data's order, at most so many."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from recognition.line_data import LineSample, SkipReport, iter_samples, matches_source


def select_lines(data: Sequence[str], sources: Sequence[str] | None = None, *, at_most: int | None = None,
                 at_most_per_source: int | None = None) -> list[LineSample]:
    """The lines of ``data`` (line folders or manifests) whose source matches one of ``sources`` (``matches_source``;
    every line where none are named), in file order: of each source the first ``at_most_per_source``, and of
    those the first ``at_most``. The data is read to its end, so a missing folder fails however few lines are asked.
    """
    taken, per_source = [], Counter()
    for sample in iter_samples(list(data), SkipReport()):
        if sources and not matches_source(sample.source, list(sources)):
            continue
        if at_most_per_source is not None and per_source[sample.source] >= at_most_per_source:
            continue
        per_source[sample.source] += 1
        taken.append(sample)
    return taken if at_most is None else taken[:at_most]
