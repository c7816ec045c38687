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
Latin words) are met last-character-first; ``reading_order`` reverses exactly
those runs, and since it is its own inverse the same function maps model output
back to logical order.
"""

from __future__ import annotations

import re
import unicodedata

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

_STRONG_LTR = {"L"}
_NUMBER = {"EN", "AN"}
_NUMBER_SEPARATOR = {"ES", "CS"}  # + - , . : / between digits stay in the number
_NUMBER_TERMINATOR = {"ET"}       # % $ # next to digits belong to the number


def _is_ltr_level(text: str) -> list[bool]:
    """For each character of a right-to-left line: is it displayed left to right?

    A reduced Unicode Bidirectional Algorithm for a paragraph of base direction
    RTL with no explicit embeddings (they were stripped by ``normalize_text``):
    rules W4/W5 (separators and terminators joined to numbers), N1 (neutrals
    between two strong L become L; numbers count as R for neutrals) and I2
    (L and numbers are raised to an even level inside an RTL paragraph).
    """
    classes = [unicodedata.bidirectional(ch) or "ON" for ch in text]
    n = len(classes)
    # W4: a single separator between two numbers joins them.
    for i in range(1, n - 1):
        if classes[i] in _NUMBER_SEPARATOR and classes[i - 1] in _NUMBER and classes[i + 1] in _NUMBER:
            classes[i] = classes[i - 1]
    # W5: terminators adjacent to a number become part of it.
    for i in range(n):
        if classes[i] in _NUMBER_TERMINATOR:
            j = i
            while j < n and classes[j] in _NUMBER_TERMINATOR:
                j += 1
            k = i - 1
            if (j < n and classes[j] == "EN") or (k >= 0 and classes[k] == "EN"):
                for m in range(i, j):
                    classes[m] = "EN"
    is_ltr = [c in _STRONG_LTR or c in _NUMBER for c in classes]
    # N1: a run of neutrals between two strong L characters takes direction L.
    i = 0
    while i < n:
        if is_ltr[i]:
            i += 1
            continue
        j = i
        while j < n and not is_ltr[j] and classes[j] not in ("R", "AL"):
            j += 1
        before = classes[i - 1] if i > 0 else None
        after = classes[j] if j < n else None
        if j > i and before == "L" and after == "L":
            for m in range(i, j):
                is_ltr[m] = True
        i = max(j, i + 1)
    return is_ltr


def reading_order_permutation(text: str) -> list[int]:
    """Indices into ``text`` in right-to-left reading order (an involution).

    Every maximal left-to-right run of a right-to-left line is reversed, so for
    ``"سنة 123"`` the reader moving right to left along the printed line meets
    "3" before "1". Applying the permutation twice gives the identity, so the
    same function maps logical order to reading order and back.
    """
    levels = _is_ltr_level(text)
    order: list[int] = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and levels[j] == levels[i]:
            j += 1
        run = list(range(i, j))
        order.extend(reversed(run) if levels[i] else run)
        i = j
    return order


def reading_order(text: str) -> str:
    """Logical order <-> right-to-left reading order; see the permutation."""
    return "".join(text[i] for i in reading_order_permutation(text))
