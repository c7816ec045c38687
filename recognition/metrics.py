"""Character and word error rates, and the alignments behind them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


def edit_operations(ref: Sequence, hyp: Sequence) -> list[tuple[str, object, object]]:
    """Levenshtein alignment of ``hyp`` against ``ref``.

    Returns (op, ref_item, hyp_item) with op in equal/sub/del/ins; del is a
    reference item the hypothesis lacks, ins an extra hypothesis item.
    """
    n, m = len(ref), len(hyp)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev, r = dist[i], dist[i - 1], ref[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != hyp[j - 1]))
    ops = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("equal" if ref[i - 1] == hyp[j - 1] else "sub", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            ops.append(("del", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("ins", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return ops


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


@dataclass
class ErrorCounter:
    """Accumulates errors over many lines; rates are errors / reference length."""

    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    lines: int = 0
    confusions: Counter = field(default_factory=Counter)

    def add(self, ref: str, hyp: str, track_confusions: bool = False) -> int:
        if track_confusions:
            ops = edit_operations(ref, hyp)
            errors = sum(op != "equal" for op, _, _ in ops)
            self.confusions.update((r or "", h or "") for op, r, h in ops if op != "equal")
        else:
            errors = edit_distance(ref, hyp)
        self.char_errors += errors
        self.chars += len(ref)
        self.word_errors += edit_distance(ref.split(), hyp.split())
        self.words += len(ref.split())
        self.lines += 1
        return errors

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.chars, 1)

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.words, 1)

