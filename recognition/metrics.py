"""Character and word error rates, and the alignments behind them (Levenshtein, via rapidfuzz)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein


def edit_operations(ref: Sequence, hyp: Sequence) -> list[tuple[str, object, object]]:
    """A minimal alignment of ``hyp`` against ``ref``.

    Returns (op, ref_item, hyp_item) with op in equal/sub/del/ins; del is a
    reference item the hypothesis lacks, ins an extra hypothesis item.
    """
    ops: list[tuple[str, object, object]] = []
    for block in Levenshtein.opcodes(ref, hyp):
        if block.tag == "equal":
            ops.extend(("equal", ref[i], hyp[j]) for i, j in zip(range(block.src_start, block.src_end),
                                                                  range(block.dest_start, block.dest_end)))
        elif block.tag == "replace":
            ops.extend(("sub", ref[i], hyp[j]) for i, j in zip(range(block.src_start, block.src_end),
                                                                range(block.dest_start, block.dest_end)))
        elif block.tag == "delete":
            ops.extend(("del", ref[i], None) for i in range(block.src_start, block.src_end))
        else:
            ops.extend(("ins", None, hyp[j]) for j in range(block.dest_start, block.dest_end))
    return ops


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Insertions + deletions + substitutions turning ``ref`` into ``hyp`` (strings or word lists)."""
    return Levenshtein.distance(ref, hyp)


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
