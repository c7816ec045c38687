"""Arabic text normalisation and right-to-left reading order.

Policy (used for training labels, evaluation and service output alike):

* Unicode NFC, so a letter typed as base + combining hamza/madda (U+0654,
  U+0655, U+0653, common in decomposed transcriptions) and the precomposed
  letter are one symbol. Without this the alphabet doubles.
* Arabic presentation forms (U+FB50-U+FDFF, U+FE70-U+FEFF), the output of
  reshapers and of some PDF extractions, are folded to base letters (NFKC for
  those code points only: NFKC on the whole line would also rewrite digits,
  superscripts and symbols we want to keep).
* Bidi control marks, zero-width joiners and the BOM are dropped: they are
  invisible, so no image can tell whether they were there.
* Harakat (short vowels, tanwin, shadda, sukun, dagger alef) are dropped by
  default: printed classical books vocalise erratically and the gold-standard
  transcriptions we train on (OpenITI) leave them out, so a model cannot learn
  to output them consistently. ``keep_harakat=True`` keeps them for data that
  transcribes them.
* Tatweel (kashida) is kept: the transcriptions keep it where it carries
  meaning (the abbreviation "هـ"). ``strip_tatweel`` exists for evaluation.
* Digits are ASCII whatever their printed shape: Arabic-Indic (٠-٩) and
  Persian (۰-۹) digits are folded to 0-9. Most Arabic books print Arabic-Indic
  digits and the gold-standard transcriptions write them as ASCII digits, so a
  model trained on them does too; both sides of an evaluation are folded.
* Whitespace runs (including NBSP) become one space; ends are trimmed.

Reading order: labels and output are in logical (Unicode) order. The model
reads a horizontally mirrored line, i.e. right to left, so for pure Arabic its
symbol sequence *is* logical order. Left-to-right runs inside the line (digits,
Latin words) are met last-character-first. ``reading_order`` (labels) and
``logical_order`` (model output) map between the two orders with the embedding
levels of the complete Unicode Bidirectional Algorithm (python-bidi's Rust
implementation, which agrees with FriBiDi, the library that lays out our
synthetic lines); permutations let confidences travel with their characters.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from bidi import get_display

_BIDI_AND_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
             "\u2066\u2067\u2068\u2069\u061c\ufeff\u00ad"),
    None,
)
_PRESENTATION_FORMS = re.compile("[\ufb50-\ufdff\ufe70-\ufefe]")
_WHITESPACE = re.compile(r"\s+")
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_HARAKAT = re.compile("[\u064b-\u0652\u0670]")  # fathatan .. sukun, dagger alef
TATWEEL = "\u0640"


def _fold_presentation_form(match: re.Match) -> str:
    return unicodedata.normalize("NFKC", match.group(0))


def normalize_text(text: str, keep_harakat: bool = False) -> str:
    """Canonical form of an Arabic transcription (see module docstring)."""
    text = text.translate(_BIDI_AND_INVISIBLE)
    text = _PRESENTATION_FORMS.sub(_fold_presentation_form, text)
    text = unicodedata.normalize("NFC", text).translate(_DIGITS)
    if not keep_harakat:
        text = strip_harakat(text)
    return _WHITESPACE.sub(" ", text).strip()


def strip_harakat(text: str) -> str:
    return _HARAKAT.sub("", text)


def strip_tatweel(text: str) -> str:
    return text.replace(TATWEEL, "")


# --- reading order -----------------------------------------------------------

# Only these classes can end up at an even (left-to-right) level in a
# right-to-left paragraph without explicit embeddings; a line without any of
# them is read in logical order as it is.
_CAN_RUN_LEFT_TO_RIGHT = {"L", "EN", "AN"}
# L1: whitespace (and isolate marks) before the end of a line go back to the
# paragraph level.
_TRAILING_RESET = {"WS", "FSI", "LRI", "RLI", "PDI", "BN"}
_DEBUG_LEVELS = re.compile(r"Level\(\s*(\d+),?\s*\)")
_RTL_PARAGRAPH = 1


@functools.lru_cache(maxsize=4096)
def _can_run_left_to_right(ch: str) -> bool:
    return unicodedata.bidirectional(ch) in _CAN_RUN_LEFT_TO_RIGHT


def _all_right_to_left(text: str) -> bool:
    """No character of ``text`` can sit in a left-to-right run: its levels are all the paragraph's."""
    return not any(map(_can_run_left_to_right, set(text)))


def embedding_levels(text: str) -> list[int]:
    """Resolved Unicode bidi embedding level of each character of a right-to-left line.

    The levels come from python-bidi's Rust implementation (the ``unicode-bidi``
    crate, the complete UAX #9 with bracket pairs), which agrees with FriBiDi,
    the library raqm lays our synthetic lines out with. python-bidi hands its
    levels out only through ``get_display(..., debug=True)``, one per UTF-8
    byte; we take each character's first byte and apply rule L1 (trailing
    whitespace back to the paragraph level) ourselves, as a line is laid out.
    """
    if _all_right_to_left(text):
        return [_RTL_PARAGRAPH] * len(text)
    report = get_display(text, base_dir="R", debug=True)
    levels_section = report.split("levels: [", 1)[1].split("paragraphs:", 1)[0]
    byte_levels = [int(level) for level in _DEBUG_LEVELS.findall(levels_section)]
    if len(byte_levels) != len(text.encode("utf-8")):
        raise RuntimeError("python-bidi's debug report changed shape: pin the version requirements.txt names")
    levels, offset = [], 0
    for ch in text:
        levels.append(byte_levels[offset])
        offset += len(ch.encode("utf-8"))
    for i in range(len(text) - 1, -1, -1):
        if unicodedata.bidirectional(text[i]) not in _TRAILING_RESET:
            break
        levels[i] = _RTL_PARAGRAPH
    return levels


def _right_to_left_order(levels: list[int]) -> list[int]:
    """Rule L2 (reverse every run at or above each odd level), then read right to left."""
    order = list(range(len(levels)))
    if not levels:
        return order
    lowest_odd = min(level for level in levels) | 1
    for level in range(max(levels), lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] < level:
                i += 1
                continue
            j = i
            while j < len(order) and levels[order[j]] >= level:
                j += 1
            order[i:j] = order[i:j][::-1]
            i = j
    return order[::-1]  # L2 gives left-to-right display order; a reader of Arabic starts at the right


def reading_order_permutation(text: str) -> list[int]:
    """Indices into logical ``text`` in the order a reader meets them, right to left.

    ``"سنة 123"`` is met as "سنة 321": left-to-right runs (numbers, Latin) come
    last character first. This is the order the model, reading a mirrored
    line, emits its symbols in, so training labels are built with it.
    """
    return _right_to_left_order(embedding_levels(text))


def logical_order_permutation(reading: str) -> list[int]:
    """Indices into ``reading`` (right-to-left reading order) in logical order.

    The inverse of ``reading_order``: model output -> logical text, with any
    per-character values (confidences) carried along by the caller. The bidi
    algorithm is not its own inverse on strings (the levels of "321 CBA" are
    not those of "ABC 123"), so the runs are found by resolving the levels of
    the reading-order string itself and the permutation is inverted. That is
    exact for Arabic with numbers and punctuation (the model's alphabet).
    Where Latin words sit beside numbers two logical strings can share one
    reading order ("ABC 123" and "123 ABC" print alike, as "ABC 123"); the one
    returned is laid out as the reading given.
    """
    if _all_right_to_left(reading):  # most lines: read right to left, they are in logical order already
        return list(range(len(reading)))
    order = _right_to_left_order(embedding_levels(reading))
    inverse = [0] * len(order)
    for position, index in enumerate(order):
        inverse[index] = position
    return inverse


def reading_order(text: str) -> str:
    """Logical text -> the order a right-to-left reader meets its characters."""
    return "".join(text[i] for i in reading_order_permutation(text))


def logical_order(reading: str) -> str:
    """Right-to-left reading order (model output) -> logical Unicode text."""
    return "".join(reading[i] for i in logical_order_permutation(reading))
