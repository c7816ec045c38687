import unicodedata

import pytest
from bidi import get_display

from recognition.text import normalize_text, reading_order, reading_order_permutation, strip_tatweel


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
    ("نسبة 50% فقط", "نسبة %05 فقط"),
    ("كتاب Kitab al-Ibar جزء", "كتاب rabI-la batiK جزء"),
    ("سنة ١٤٢٣", "سنة ٣٢٤١"),
    ("قال أبو محمد", "قال أبو محمد"),
])
def test_reading_order_reverses_left_to_right_runs_only(logical, reading):
    assert reading_order(logical) == reading
    assert reading_order(reading) == logical


@pytest.mark.parametrize("text", [
    "سنة 123 هـ", "في 12 و 34 و ABC DEF", "ص 1,234.5 من 7/8", "Latin only", "12 34", "سنة ١٤٢٣ هـ",
])
def test_reading_order_matches_the_unicode_bidi_algorithm(text):
    # python-bidi implements the full UBA; its visual (left-to-right) string of
    # an RTL paragraph, reversed, is what a reader meets right to left.
    # Mirrored characters are excluded: bidi mirrors glyphs we read unmirrored.
    visual = get_display(text, base_dir="R")
    assert reading_order(text) == visual[::-1]


def test_reading_order_permutation_is_an_involution():
    text = "ولد سنة 1234 وتوفي 1290 Abc de"
    order = reading_order_permutation(text)
    assert sorted(order) == list(range(len(text)))
    assert [order[i] for i in order] == list(range(len(text)))
