"""A book's transcription conventions: where its transcriptions put spaces around punctuation.

The print does not settle whether a line ends in "word ." or "word.", or whether a quotation is
"« word »" or "«word»": that is the transcriber's convention, and books differ. One of ours writes a
space before "." 220 times against 5 without; the books the global model learned from almost never do.
A few hundred lines of fine-tuning do not move the model's habit (bench/README.md, "Book adaptation"),
so an adapted model carries its book's conventions instead, learned from the corrected lines it was
trained on (``learn_conventions``), in its metadata (``transcription_conventions``), and decoding applies
them to what the model read (``TranscriptionConventions.apply``, called by ``recognition.ctc.decode_line``),
so lines, pages and jobs all read the same. The global model carries none, and reads as it did.

A rule says, for one punctuation mark of the model's alphabet and one side of it, "always a space
there" or "never a space there". It is a candidate only where the book is consistent: at least
``min_share`` (0.9) of at least ``min_count`` (10) occurrences of the mark on that side have (or lack)
a space. A candidate is kept only if it corrects the readings it was learned from (``keep_helpful``:
the adapted model's readings of the corrected lines it trained on, scored against their
transcriptions), because a book may be consistent where the model already reads it right, and then
the few exceptions are all a rule can change. Not counted nor changed: the outer side of a line's
first and last character, and a mark between two digits ("1.5", "3:14"), which belongs to a number.
Where two rules disagree about one gap (a mark that wants a space after it before a mark that wants
none before it), the gap stays as read.

Characters stay in logical order; a space added gets the chance that it is right: the confidence of
the mark that called for it times the share of the book's lines that follow the rule.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .metadata_json import read_optional_prop, read_versioned_json

METADATA_KEY = "transcription_conventions"
BEFORE, AFTER = "before", "after"
SPACE = " "


class ConventionsError(ValueError):
    pass


@dataclass(frozen=True)
class SpacingRule:
    """One mark, one side: a space there (``space``) or none, as ``share`` of ``count`` occurrences had it."""

    mark: str
    side: str
    space: bool
    share: float
    count: int

    def to_dict(self) -> dict:
        return {"mark": self.mark, "side": self.side, "space": self.space, "share": round(self.share, 4),
                "count": self.count}

    @classmethod
    def from_dict(cls, data: dict) -> SpacingRule:
        rule = cls(str(data["mark"]), str(data["side"]), bool(data["space"]), float(data["share"]),
                   int(data["count"]))
        if len(rule.mark) != 1 or rule.mark == SPACE or rule.side not in (BEFORE, AFTER):
            raise ConventionsError(f"not a spacing rule: {data!r}")
        return rule

    def describe(self) -> str:
        where = "before" if self.side == BEFORE else "after"
        return (f"{'a space' if self.space else 'no space'} {where} {self.mark!r} "
                f"({100 * self.share:.0f}% of {self.count})")


@dataclass(frozen=True)
class TranscriptionConventions:
    """The spacing rules a model applies after decoding, and where they were learned."""

    rules: tuple[SpacingRule, ...]
    learned_from: str = ""

    def __post_init__(self):
        keys = [(r.mark, r.side) for r in self.rules]
        if len(set(keys)) != len(keys):
            raise ConventionsError("two rules for one mark and side")
        object.__setattr__(self, "_by_key", dict(zip(keys, self.rules)))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def to_json(self) -> str:
        return json.dumps({"version": 1, "rules": [r.to_dict() for r in self.rules],
                           "learned_from": self.learned_from}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TranscriptionConventions:
        return read_versioned_json(text, METADATA_KEY, "conventions", ConventionsError, lambda data: cls(
            tuple(SpacingRule.from_dict(r) for r in data["rules"]), data.get("learned_from", "")))

    @classmethod
    def from_props(cls, props: dict[str, str]) -> TranscriptionConventions | None:
        """The conventions a model's metadata carries, or None (a model that reads as it was trained)."""
        return read_optional_prop(props, METADATA_KEY, cls.from_json)

    def apply(self, chars: Sequence[str], confidences: Sequence[float]) -> tuple[list[str], list[float]]:
        """Characters read (logical order) and their confidences -> the same with the book's spacing."""
        if len(chars) != len(confidences):
            raise ValueError("one confidence per character")
        printed = [i for i, c in enumerate(chars) if c != SPACE]
        if not printed:
            return list(chars), list(confidences)
        out_chars = list(chars[: printed[0]])
        out_conf = list(confidences[: printed[0]])
        for left, right in zip([None, *printed], printed):
            if left is not None:
                gap = range(left + 1, right)   # the spaces read between two printed characters
                wanted, chance = self._gap(chars, confidences, left, right)
                if wanted is None or wanted == bool(gap):
                    out_chars.extend(chars[i] for i in gap)
                    out_conf.extend(confidences[i] for i in gap)
                elif wanted:
                    out_chars.append(SPACE)
                    out_conf.append(chance)
            out_chars.append(chars[right])
            out_conf.append(confidences[right])
        out_chars.extend(chars[printed[-1] + 1:])
        out_conf.extend(confidences[printed[-1] + 1:])
        return out_chars, out_conf

    def apply_text(self, text: str) -> str:
        return "".join(self.apply(list(text), [1.0] * len(text))[0])

    def _gap(self, chars: Sequence[str], confidences: Sequence[float], left: int,
             right: int) -> tuple[bool | None, float]:
        """Whether the gap between two printed characters should hold a space (None: leave it), and the
        chance a space put there is right."""
        votes = []
        for position, side in ((left, AFTER), (right, BEFORE)):
            rule = self._by_key.get((chars[position], side))  # type: ignore[attr-defined]
            if rule is not None and not in_number(chars, position):
                votes.append((rule.space, rule.share * float(confidences[position])))
        if not votes or len({space for space, _ in votes}) > 1:
            return None, 0.0
        return votes[0][0], max(chance for _, chance in votes)


def in_number(chars: Sequence[str], position: int) -> bool:
    """A mark between two digits (``1.5``, ``3:14``) belongs to a number, not to the sentence."""
    return (0 < position < len(chars) - 1 and chars[position - 1].isdigit()
            and chars[position + 1].isdigit())


def punctuation_marks(characters: Iterable[str]) -> list[str]:
    """The punctuation marks (Unicode category P*) among an alphabet's characters."""
    return [c for c in characters if unicodedata.category(c).startswith("P")]


def spacing_counts(texts: Iterable[str], marks: Iterable[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """For each (mark, side): (occurrences with a space there, occurrences judged) in normalised lines."""
    marks = set(marks)
    spaced, judged = Counter(), Counter()
    for text in texts:
        for position, char in enumerate(text):
            if char not in marks or in_number(text, position):
                continue
            for neighbour, side in ((position - 1, BEFORE), (position + 1, AFTER)):
                if 0 <= neighbour < len(text):
                    judged[char, side] += 1
                    spaced[char, side] += text[neighbour] == SPACE
    return {key: (spaced[key], judged[key]) for key in judged}


def learn_conventions(texts: Iterable[str], marks: Iterable[str], min_count: int = 10, min_share: float = 0.9,
                      learned_from: str = "") -> TranscriptionConventions:
    """The rules where the lines (normalised transcriptions, ``recognition.text``) are consistent."""
    rules = []
    for (mark, side), (spaced, judged) in sorted(spacing_counts(texts, marks).items()):
        if judged < min_count:
            continue
        share = spaced / judged
        if share >= min_share:
            rules.append(SpacingRule(mark, side, True, share, judged))
        elif 1 - share >= min_share:
            rules.append(SpacingRule(mark, side, False, 1 - share, judged))
    return TranscriptionConventions(tuple(rules), learned_from)


def keep_helpful(conventions: TranscriptionConventions, references: Sequence[str], readings: Sequence[str],
                 min_gain: int = 1) -> tuple[TranscriptionConventions, list[dict]]:
    """The rules that, each on its own, remove at least ``min_gain`` more errors than they add to ``readings``
    of ``references``.

    Returns the kept conventions and, for every candidate, what it did (errors fixed - errors made).
    """
    from .metrics import edit_distance

    before = sum(edit_distance(r, h) for r, h in zip(references, readings, strict=True))
    kept, report = [], []
    for rule in conventions.rules:
        alone = TranscriptionConventions((rule,))
        after = sum(edit_distance(r, alone.apply_text(h)) for r, h in zip(references, readings))
        report.append({**rule.to_dict(), "errors_removed": before - after})
        if before - after >= min_gain:
            kept.append(rule)
    return TranscriptionConventions(tuple(kept), conventions.learned_from), report
