"""CER/WER figures, pinned: the rapidfuzz implementation gives the figures the pure-Python one gave."""

import pytest

from recognition.metrics import ErrorCounter, edit_distance, edit_operations


@pytest.mark.parametrize("ref, hyp, distance", [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3),
    ("قال أبو محمد", "قال ابو محمد", 1), ("سنة 123", "سنة 12", 1), ("abc", "cba", 2),
])
def test_edit_distance(ref, hyp, distance):
    assert edit_distance(ref, hyp) == distance
    assert edit_distance(ref.split(), hyp.split()) <= max(len(ref.split()), len(hyp.split()))


def test_edit_operations_align_and_count_like_the_distance():
    ops = edit_operations("kitten", "sitting")
    assert sum(op != "equal" for op, _, _ in ops) == 3
    assert ("sub", "k", "s") in ops and ("sub", "e", "i") in ops and ("ins", None, "g") in ops
    assert "".join(r for op, r, _ in ops if r is not None) == "kitten"
    assert "".join(h for op, _, h in ops if h is not None) == "sitting"
    assert edit_operations("ab", "b") == [("del", "a", None), ("equal", "b", "b")]


def test_error_counter_rates_are_pinned():
    counter = ErrorCounter()
    counter.add("قال أبو محمد", "قال ابو محمد")          # 1 char, 1 word
    counter.add("وكان عالما فاضلا", "وكان عالما فاضلا")  # perfect
    counter.add("سنة 123 هـ", "سنة 12")                 # 4 chars ("3", " ", "ه", "ـ"), 2 words
    # the figures the pure-Python implementation gave before rapidfuzz
    assert (counter.char_errors, counter.chars, counter.word_errors, counter.words) == (5, 38, 3, 9)
    assert counter.cer == pytest.approx(5 / 38) and counter.wer == pytest.approx(3 / 9)
    assert counter.lines == 3


def test_confusions_are_tracked_without_changing_the_figures():
    plain, tracked = ErrorCounter(), ErrorCounter()
    for ref, hyp in [("قال أبو", "قال ابو"), ("محمد", "محمود"), ("ab", "")]:
        assert plain.add(ref, hyp) == tracked.add(ref, hyp, track_confusions=True)
    assert (plain.char_errors, plain.word_errors) == (tracked.char_errors, tracked.word_errors)
    assert tracked.confusions[("أ", "ا")] == 1 and tracked.confusions[("", "و")] == 1
    assert tracked.confusions[("a", "")] == tracked.confusions[("b", "")] == 1
    assert not plain.confusions


def test_empty_references_do_not_divide_by_zero():
    counter = ErrorCounter()
    counter.add("", "x")
    assert counter.cer == 1.0 and counter.wer == 1.0
