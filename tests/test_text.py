import ctypes
import ctypes.util
import functools
import random
import re
import unicodedata

import numpy as np
import pytest
from bidi import get_display

from recognition.text import (
    embedding_levels,
    logical_order,
    logical_order_permutation,
    normalize_text,
    reading_order,
    reading_order_permutation,
    strip_tatweel,
)

UNMIRRORED = str.maketrans(")]»", "([«")  # python-bidi mirrors brackets on right-to-left levels


def test_decomposed_hamza_and_madda_compose_to_one_letter():
    decomposed = "\u0627\u0654\u062d\u0645\u062f \u0627\u0653\u062e\u0631"  # alef+hamza, alef+madda
    assert normalize_text(decomposed) == "أحمد آخر"
    assert normalize_text(decomposed) == normalize_text(unicodedata.normalize("NFC", decomposed))


def test_presentation_forms_fold_to_base_letters():
    # "السلام" as a reshaper writes it (final/medial forms) and the lam-alef ligature.
    shaped = "\ufe8e\ufee4\ufefc\ufeb4\ufedf\ufe8d"
    assert all(not ("\ufb50" <= c <= "\ufeff") for c in normalize_text(shaped))
    assert normalize_text("\ufefb") == "\u0644\u0627"  # lam-alef ligature -> lam + alef


def test_presentation_form_folding_keeps_other_compatibility_characters():
    assert normalize_text("x² ﬁ") == "x² ﬁ"  # NFKC on the whole line would turn these into 2 and fi


def test_arabic_indic_and_persian_digits_become_ascii():
    assert normalize_text("سنة ١٤٢٣ و ۱۲") == "سنة 1423 و 12"


def test_bidi_controls_and_invisible_marks_are_dropped():
    assert normalize_text("\u202bسلام\u202c \u200fعليكم\u200e\u200c") == "سلام عليكم"
    assert normalize_text("\ufeff\u061cكتاب") == "كتاب"


def test_harakat_are_dropped_by_default_and_kept_on_request():
    vocalised = "كَتَبَ الوَلَدُ"
    assert normalize_text(vocalised) == "كتب الولد"
    assert normalize_text(vocalised, keep_harakat=True) == vocalised


def test_tatweel_is_kept_and_strippable():
    assert normalize_text("سنة 5 هـ") == "سنة 5 هـ"
    assert strip_tatweel("كتـــاب") == "كتاب"


def test_whitespace_runs_collapse():
    assert normalize_text("  قال\u00a0\u00a0 أبو\tمحمد \n") == "قال أبو محمد"


@pytest.mark.parametrize("logical, reading", [
    ("سنة 123 هـ", "سنة 321 هـ"),
    ("في 12 و 34", "في 21 و 43"),
    ("قال (1) كذا", "قال (1) كذا"),
    ("ص 1,234.5", "ص 5.432,1"),
    ("نسبة 50% فقط", "نسبة 05% فقط"),  # a number after Arabic is an Arabic number: % stays outside (W2, W5)
    ("كتاب Kitab al-Ibar جزء", "كتاب rabI-la batiK جزء"),
    ("سنة ١٤٢٣", "سنة ٣٢٤١"),
    ("قال أبو محمد", "قال أبو محمد"),
    ("قال 12-15 كذا", "قال 21-51 كذا"),  # two numbers, not one run "51-21"
    ("قال (12) كذا", "قال (21) كذا"),
])
def test_reading_order_reverses_left_to_right_runs_and_logical_order_undoes_it(logical, reading):
    assert reading_order(logical) == reading
    assert logical_order(reading) == logical


# Where the reduced algorithm this module used to carry disagreed with the full one.
REDUCED_ALGORITHM_DISAGREED = [
    "ABC 123", "AD 1990", "قال 12-15 كذا", "سنة 12-15", "نسبة 12% فقط", "12%", "$12", "50%", "ثمن $12 فقط",
    "قال (12) كذا", "قال (١٢) كذا", "في (12) و(13)", "ABC (12) DEF", "في AD 1990 م",
]
MIXED_LINES = [
    "سنة 123 هـ", "في 12 و 34 و ABC DEF", "ص 1,234.5 من 7/8", "Latin only", "12 34", "سنة ١٤٢٣ هـ",
    "قال [12] «كذا» (ABC) 3:4", "ولد سنة 1234 وتوفي 1290 Abc de", "ج 2 ص 15-17، و 3/4",
]


@functools.cache
def _fribidi() -> ctypes.CDLL:
    fribidi = ctypes.CDLL(ctypes.util.find_library("fribidi") or "libfribidi.so.0")
    fribidi.fribidi_get_par_embedding_levels_ex.restype = ctypes.c_int8  # FriBidiLevel; 0 is failure
    fribidi.fribidi_reorder_line.restype = ctypes.c_int8
    return fribidi


def fribidi_reading_order(text: str) -> str:
    """What FriBiDi, the bidi library under raqm and so under our renderer, lays out, read right to left.

    Called through ctypes: the paragraph is right to left, as the renderer
    draws it (``direction="rtl"``); levels are reordered by rule L2.
    """
    fribidi = _fribidi()
    n = len(text)
    chars = (ctypes.c_uint32 * n)(*map(ord, text))
    types = (ctypes.c_uint32 * n)()
    brackets = (ctypes.c_uint32 * n)()
    levels = (ctypes.c_int8 * n)()
    fribidi.fribidi_get_bidi_types(chars, n, types)
    fribidi.fribidi_get_bracket_types(chars, n, types, brackets)
    paragraph = ctypes.c_uint32(0x00000111)  # FRIBIDI_PAR_RTL
    assert fribidi.fribidi_get_par_embedding_levels_ex(types, brackets, n, ctypes.byref(paragraph), levels) > 0
    map_ = (ctypes.c_int32 * n)(*range(n))
    assert fribidi.fribidi_reorder_line(0, types, n, 0, 0x00000111, levels, None, map_) > 0
    return "".join(text[i] for i in reversed(list(map_)))  # display order is left to right


@pytest.mark.parametrize("text", REDUCED_ALGORITHM_DISAGREED + MIXED_LINES)
def test_labels_follow_the_renderers_layout(text):
    assert reading_order(text) == fribidi_reading_order(text)
    # python-bidi's own display string says the same, mirrored glyphs aside
    assert reading_order(text).translate(UNMIRRORED) == get_display(text, base_dir="R")[::-1].translate(UNMIRRORED)


def test_labels_follow_the_renderers_layout_on_random_mixed_lines():
    rng = random.Random(10)
    pieces = ["قال", "سنة", "هـ", "في", "12", "1990", "12-15", "50%", "$3", "(12)", "[3]", "«كذا»", "1,234.5",
              "7/8", "AD", "Kitab", "(ABC)", "،", ":", "."]
    for _ in range(300):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
        assert reading_order(text) == fribidi_reading_order(text), text


@pytest.mark.parametrize("text", REDUCED_ALGORITHM_DISAGREED + MIXED_LINES)
def test_logical_order_gives_a_line_that_reads_back_the_same(text):
    reading = reading_order(text)
    assert reading_order(logical_order(reading)) == reading
    if not any(unicodedata.bidirectional(c) == "L" for c in text):
        assert logical_order(reading) == text  # without Latin the inverse is exact


def test_latin_beside_numbers_is_ambiguous_and_both_readings_print_alike():
    # "ABC 123" and "123 ABC" are drawn identically in a right-to-left line
    assert reading_order("ABC 123") == reading_order("123 ABC") == "321 CBA"
    assert fribidi_reading_order("ABC 123") == fribidi_reading_order("123 ABC")


def test_trailing_spaces_return_to_the_paragraph_level():
    assert embedding_levels("سنة 12 ") == [1, 1, 1, 1, 2, 2, 1]
    assert embedding_levels("ABC ") == [2, 2, 2, 1]


def test_permutations_are_inverse_of_each_other():
    text = "ولد سنة 1234 وتوفي 1290 (ص 12-15)"
    forward = reading_order_permutation(text)
    reading = "".join(text[i] for i in forward)
    backward = logical_order_permutation(reading)
    assert sorted(forward) == list(range(len(text)))
    assert "".join(reading[i] for i in backward) == text


@pytest.mark.parametrize("seed", range(5))
def test_a_line_without_left_to_right_characters_is_in_logical_order_as_read(seed):
    """The shortcut for most lines (no Latin, no digit): python-bidi resolves every character of such a line to
    the right-to-left paragraph level, so reading order is logical order and the permutation is the identity."""
    from bidi import get_display

    rng = np.random.default_rng(seed)
    symbols = list("ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئةىـ") + list(" .,:;!?()«»[]-/،؛؟\"'")
    for _ in range(40):
        text = "".join(rng.choice(symbols, int(rng.integers(1, 40))))
        report = get_display(text, base_dir="R", debug=True)
        levels = re.findall(r"Level\(\s*(\d+),?\s*\)", report.split("levels: [", 1)[1].split("paragraphs:", 1)[0])
        assert set(levels) == {"1"}, text
        assert logical_order_permutation(text) == reading_order_permutation(text) == list(range(len(text)))
