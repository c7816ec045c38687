"""Whether a model adapted to one book may replace that book's model: the per-book quality gate.

One rule, used by the service (``ocr_app.books``) and the benchmark (``bench.adaptation``):

- **better on the book**: its CER on the held-out slice of the book's reviewed lines must be lower
  than the book's current model's on the same lines;
- **no forgetting**: its CER on the general reference set must be at most ``max_forgetting`` (1.2)
  times the global model's, so a book-specific model still reads Arabic print in general. That set is
  read without the book's transcription conventions (``recognition.conventions``): it is transcribed by
  other ones, and "a space before '.'" in it is the book's habit, not a reading lost.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_FORGETTING = 1.2


@dataclass(frozen=True)
class GateVerdict:
    accepted: bool
    reason: str


def judge_adaptation(before_cer: float, after_cer: float, reference_cer: float, global_reference_cer: float,
                     max_forgetting: float = DEFAULT_MAX_FORGETTING) -> GateVerdict:
    """The verdict on a candidate, with a reason a reviewer can read either way."""
    book = (f"held-out lines of the book: CER {100 * after_cer:.2f}% against {100 * before_cer:.2f}% "
            f"for the book's current model")
    limit = max_forgetting * global_reference_cer
    general = (f"general reference set: CER {100 * reference_cer:.2f}% against {100 * global_reference_cer:.2f}% "
               f"for the global model (limit {100 * limit:.2f}%, {max_forgetting:g}x)")
    if not after_cer < before_cer:
        return GateVerdict(False, f"refused: not better on the book ({book}); {general}")
    if reference_cer > limit:
        return GateVerdict(False, f"refused: it forgets general Arabic print ({general}); {book}")
    return GateVerdict(True, f"accepted: {book}; {general}")
