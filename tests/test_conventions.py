"""A book's transcription conventions (recognition.conventions): learning spacing rules from corrected lines,
keeping those that help, applying them to what a model read, and their place in the model's metadata."""

from __future__ import annotations

import pytest

from recognition.conventions import (
    AFTER,
    BEFORE,
    METADATA_KEY,
    ConventionsError,
    SpacingRule,
    TranscriptionConventions,
    keep_helpful,
    learn_conventions,
    punctuation_marks,
    spacing_counts,
)
from recognition.metadata import ModelInfo

MARKS = punctuation_marks("ابت.،()«»:")


def conventions(*rules: tuple[str, str, bool], share: float = 1.0) -> TranscriptionConventions:
    return TranscriptionConventions(tuple(SpacingRule(mark, side, space, share, 20) for mark, side, space in rules))


def test_the_marks_are_the_alphabets_punctuation():
    assert MARKS == [".", "،", "(", ")", "«", "»", ":"]
    assert punctuation_marks("اب12 ") == []


def test_a_consistent_book_gives_rules_and_an_inconsistent_side_none():
    lines = ["قال بكر .", "ثم قال «زيد» ،"] * 12 + ["وقال (1) بكر"] * 10 + ["و«قال» بكر"] * 12
    learned = learn_conventions(lines, MARKS)
    rules = {(r.mark, r.side): r for r in learned.rules}
    assert rules[".", BEFORE] == SpacingRule(".", BEFORE, True, 1.0, 12)
    assert rules["(", AFTER].space is False and rules[")", BEFORE].space is False
    assert rules["«", AFTER] == SpacingRule("«", AFTER, False, 1.0, 24)
    # before "«": 12 spaced of 24 -> neither way 90%: no rule
    assert ("«", BEFORE) not in rules
    # "." ends each of its lines: its after side is never judged
    assert (".", AFTER) not in rules and spacing_counts(lines, ".") == {(".", BEFORE): (12, 12)}


def test_line_edges_and_numbers_are_not_counted():
    lines = ["«قال بكر", "سنة 1.5 و3:14", ". قال"]
    counts = spacing_counts(lines, MARKS)
    assert counts == {("«", AFTER): (0, 1), (".", AFTER): (1, 1)}


def test_too_few_occurrences_or_a_mixed_habit_make_no_rule():
    assert not learn_conventions(["قال بكر ."] * 9, MARKS)
    assert learn_conventions(["قال بكر ."] * 10, MARKS)
    mixed = ["قال بكر ."] * 17 + ["قال بكر."] * 3   # 85%
    assert not learn_conventions(mixed, MARKS)
    assert learn_conventions(mixed, MARKS, min_share=0.85).rules[0].share == pytest.approx(0.85)


def test_applying_adds_and_removes_spaces_around_the_marks():
    rules = conventions((".", BEFORE, True), (")", BEFORE, False), ("،", BEFORE, True), ("«", AFTER, True))
    assert rules.apply_text("قال بكر.") == "قال بكر ."
    assert rules.apply_text("قال بكر ( 1 ) ، ثم») .") == "قال بكر ( 1) ، ثم») ."
    assert rules.apply_text("«قال» بكر") == "« قال» بكر"


def test_already_spaced_lines_and_line_edges_stay_as_read():
    rules = conventions((".", BEFORE, True), ("«", BEFORE, True), ("»", AFTER, True))
    assert rules.apply_text("قال بكر .") == "قال بكر ."
    assert rules.apply_text("«قال بكر»") == "«قال بكر»"        # nothing before the first, after the last
    assert rules.apply_text(". قال") == ". قال"                # a line that starts with a mark
    assert conventions((".", AFTER, False)).apply_text(". قال") == ".قال"
    assert rules.apply_text("  ") == "  " and rules.apply_text("") == ""
    assert rules.apply_text(" قال.  ") == " قال .  "         # outer spaces kept as read


def test_a_mark_between_digits_belongs_to_the_number():
    rules = conventions((".", BEFORE, True), (".", AFTER, True), (":", BEFORE, True))
    assert rules.apply_text("سنة 1.5 و3:14.") == "سنة 1.5 و3:14 ."
    assert rules.apply_text("سنة 1.") == "سنة 1 ."


def test_rules_that_disagree_about_one_gap_leave_it_as_read():
    rules = conventions(("(", AFTER, False), ("«", BEFORE, True))
    assert rules.apply_text("(«قال»)") == "(«قال»)" and rules.apply_text("( «قال»)") == "( «قال»)"
    assert rules.apply_text("بكر«قال»") == "بكر «قال»"


def test_an_added_space_is_as_sure_as_its_mark_and_the_books_habit():
    rules = TranscriptionConventions((SpacingRule(".", BEFORE, True, 0.95, 40), SpacingRule("»", AFTER, True, 0.8, 40)))
    chars, confidences = rules.apply(list("بكر»."), [0.9, 0.8, 0.7, 0.6, 0.5])
    assert "".join(chars) == "بكر» ."
    # "»" wants it after itself (0.8 x 0.6), "." before itself (0.95 x 0.5): the surer of the two
    assert confidences == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.48, 0.5])
    with pytest.raises(ValueError):
        rules.apply(["ا"], [])


def test_keep_helpful_drops_a_rule_that_would_undo_right_readings():
    rules = conventions((".", BEFORE, True), ("(", BEFORE, False))
    references = ["قال بكر .", "قال (1) بكر", "قال بكر(2)"]
    readings = ["قال بكر.", "قال (1) بكر", "قال بكر(2)"]
    kept, report = keep_helpful(rules, references, readings)
    assert [(r.mark, r.side) for r in kept.rules] == [(".", BEFORE)]
    assert [r["errors_removed"] for r in report] == [1, -1]


def test_conventions_travel_in_the_model_metadata():
    rules = conventions((".", BEFORE, True), (")", BEFORE, False), share=0.9)
    rules = TranscriptionConventions(rules.rules, "160 corrected lines")
    assert TranscriptionConventions.from_json(rules.to_json()) == rules
    props = {"alphabet": '["ا", "."]', "input_height": "48", "width_stride": "4", METADATA_KEY: rules.to_json()}
    assert ModelInfo.from_props(props).conventions == rules
    assert ModelInfo.from_props(props).to_props()[METADATA_KEY] == rules.to_json()
    del props[METADATA_KEY]
    assert ModelInfo.from_props(props).conventions is None
    for bad in ('{"version": 2, "rules": []}', '{"version": 1, "rules": [{"mark": "..", "side": "before", '
                '"space": true, "share": 1, "count": 3}]}', "not json"):
        with pytest.raises(ConventionsError):
            TranscriptionConventions.from_json(bad)
    with pytest.raises(ConventionsError, match="unreadable transcription_conventions: unknown conventions version 2"):
        TranscriptionConventions.from_json('{"version": 2, "rules": []}')
    with pytest.raises(ConventionsError):
        conventions((".", BEFORE, True), (".", BEFORE, False))
