import numpy as np
import pytest

from recognition.alphabet import Alphabet
from recognition.calibration import ConfidenceCalibration, MonotoneMap
from recognition.ctc import decode_line, dropped_character_chances, greedy_decode, run_starts


def one_hot(path, classes=4, p=0.9):
    probs = np.full((len(path), classes), (1 - p) / (classes - 1), np.float32)
    probs[np.arange(len(path)), path] = p
    return probs


def test_collapses_repeats_and_removes_blanks():
    decoded = greedy_decode(one_hot([1, 1, 0, 1, 2, 2, 0, 0, 3]))
    assert decoded.labels == (1, 1, 2, 3)


def test_blank_between_repeats_keeps_both():
    assert greedy_decode(one_hot([2, 0, 2])).labels == (2, 2)
    assert greedy_decode(one_hot([2, 2, 2])).labels == (2,)


def test_character_confidence_is_the_best_frame_of_its_run():
    probs = one_hot([1, 1, 0, 2])
    probs[0, 1], probs[1, 1] = 0.6, 0.8
    decoded = greedy_decode(probs)
    assert decoded.char_confidences == pytest.approx((0.8, 0.9))


def test_line_confidence_is_the_chance_of_no_error():
    probs = one_hot([1, 0, 2, 0])  # other classes 0.1 / 3 each
    probs[2] = [0.1, 0.1, 0.5, 0.3]
    other = 0.1 / 3
    # characters: 1 - 0.9 and 1 - 0.5; gap between them: mass on neither blank, 1 nor 2;
    # gap after the last: mass on neither blank nor 2
    expected_errors = 0.1 + 0.5 + other + 2 * other
    decoded = greedy_decode(probs)
    assert decoded.expected_errors == pytest.approx(expected_errors, rel=1e-6)
    assert decoded.confidence == pytest.approx(np.exp(-expected_errors), rel=1e-6)


def test_easy_blank_frames_do_not_raise_the_line_confidence():
    unsure = one_hot([1, 0, 2, 0], p=0.99)
    unsure[2] = [0.05, 0.0, 0.55, 0.4]
    padded = np.concatenate([one_hot([0] * 40, p=0.999), unsure, one_hot([0] * 40, p=0.999)])
    assert greedy_decode(padded).confidence == pytest.approx(greedy_decode(unsure).confidence, abs=0.01)
    assert greedy_decode(padded).confidence < 0.65


def test_a_character_the_best_path_dropped_lowers_the_line_confidence():
    sure = one_hot([1, 0, 0, 0, 2], p=0.99)
    dropped = sure.copy()
    dropped[2] = [0.55, 0.0, 0.0, 0.45]  # blank wins, but a third character nearly made it
    assert greedy_decode(dropped).labels == greedy_decode(sure).labels == (1, 2)
    assert greedy_decode(dropped).expected_errors - greedy_decode(sure).expected_errors == pytest.approx(0.45, abs=0.02)
    # the same character spread over the next frame is not a new character
    spread = sure.copy()
    spread[3] = [0.55, 0.0, 0.45, 0.0]
    assert greedy_decode(spread).expected_errors == pytest.approx(greedy_decode(sure).expected_errors, abs=0.02)


def test_all_blank_is_empty_text():
    result = decode_line(one_hot([0, 0, 0]), Alphabet(["ا", "ب", "ت"]))
    assert result.text == "" and result.characters == ()


def test_decode_line_maps_labels_through_the_alphabet():
    result = decode_line(one_hot([3, 0, 1, 1, 2]), Alphabet(["ا", "ب", "ت"]))
    assert result.text == "تاب"


def test_rejects_wrong_rank():
    with pytest.raises(ValueError):
        greedy_decode(np.zeros((2, 3, 4)))


def reading_order_probs(symbols: str, alphabet: Alphabet, confidences: list[float]) -> np.ndarray:
    """Frames that spell ``symbols`` (one frame each, blanks between) with given peaks."""
    frames = []
    for ch, p in zip(symbols, confidences):
        frame = np.full(alphabet.num_classes, (1 - p) / (alphabet.num_classes - 1), np.float32)
        frame[alphabet.encode(ch)[0]] = p
        blank = np.full(alphabet.num_classes, 0.01 / (alphabet.num_classes - 1), np.float32)
        blank[0] = 0.99
        frames += [frame, blank]
    return np.stack(frames)


def test_mirrored_output_with_digits_and_latin_comes_out_in_logical_order():
    alphabet = Alphabet(sorted(set("كتاب سنة ABC123")))
    # What a mirrored model meets reading right to left along "كتاب ABC سنة 123"
    reading = "كتاب CBA سنة 321"
    confidences = [0.9 - 0.01 * i for i in range(len(reading))]
    result = decode_line(reading_order_probs(reading, alphabet, confidences), alphabet, mirrored=True)
    assert result.text == "كتاب ABC سنة 123"
    by_char = {c.char: c.confidence for c in result.characters}
    # the confidence stays with its character through the reordering
    assert by_char["1"] == pytest.approx(confidences[reading.index("1")], abs=1e-4)
    assert by_char["A"] == pytest.approx(confidences[reading.index("A")], abs=1e-4)
    unmirrored = decode_line(reading_order_probs(reading, alphabet, confidences), alphabet, mirrored=False)
    assert unmirrored.text == reading


def test_decode_line_applies_the_model_calibration_without_reordering():
    alphabet = Alphabet(["ا", "ب", "ت"])
    probs = one_hot([1, 0, 2, 0, 3], p=0.95)
    probs[2] = [0.05, 0.0, 0.6, 0.35]
    calibration = ConfidenceCalibration(character=MonotoneMap((0.5, 1.0), (0.2, 0.9)),
                                        line=MonotoneMap((0.0, 1.0), (0.0, 0.5)))
    raw = decode_line(probs, alphabet)
    calibrated = decode_line(probs, alphabet, calibration=calibration)
    assert calibrated.text == raw.text
    for r, c in zip(raw.characters, calibrated.characters):
        assert c.confidence == pytest.approx(0.2 + (r.confidence - 0.5) / 0.5 * 0.7, abs=1e-4)
    assert calibrated.confidence == pytest.approx(raw.confidence / 2, abs=1e-4)


def test_decode_line_applies_the_book_conventions_in_logical_order():
    from recognition.conventions import BEFORE, SpacingRule, TranscriptionConventions

    alphabet = Alphabet(sorted(set("قال سنة 12.")))
    # "قال سنة 12." read right to left by a mirrored model: the number comes last digit first
    reading = "قال سنة 21."
    confidences = [0.9] * 8 + [0.8, 0.7, 0.6]
    probs = reading_order_probs(reading, alphabet, confidences)
    plain = decode_line(probs, alphabet)
    assert plain.text == "قال سنة 12."
    conventions = TranscriptionConventions((SpacingRule(".", BEFORE, True, 0.9, 50),))
    adapted = decode_line(probs, alphabet, conventions=conventions)
    assert adapted.text == "قال سنة 12 ."
    assert [c.char for c in adapted.characters] == list(adapted.text)
    assert adapted.characters[-2].confidence == pytest.approx(0.9 * 0.6, abs=1e-4)   # the space, for "."
    assert adapted.characters[-1].confidence == pytest.approx(0.6, abs=1e-4)
    assert adapted.confidence == plain.confidence
    assert decode_line(probs, alphabet, conventions=TranscriptionConventions(())).text == plain.text


def dropped_frame_by_frame(probs, best):
    """What ``dropped_character_chances`` is defined to be, gap by gap and frame by frame in Python floats."""
    chances, start = [], 0
    while start < len(best):
        if best[start] != 0:
            start += 1
            continue
        end = start
        while end < len(best) and best[end] == 0:
            end += 1
        before = int(best[start - 1]) if start > 0 else 0
        after = int(best[end]) if end < len(best) else 0
        worst = -np.inf
        for t in range(start, end):
            other = 1.0 - float(probs[t, 0])
            if before:
                other -= float(probs[t, before])
            if after and after != before:
                other -= float(probs[t, after])
            worst = max(worst, other)
        chances.append(min(max(worst, 0.0), 1.0))
        start = end
    return chances


def random_paths(seed=0, count=300):
    """Probability matrices whose best paths have gaps at either end, none, only gaps, a character
    repeated across a gap, single frames: softmax of random logits with a planted best path."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        frames, classes = int(rng.integers(1, 60)), int(rng.integers(2, 8))
        path = rng.choice(classes, frames, p=None if rng.random() < 0.3 else [0.6] + [0.4 / (classes - 1)] * (classes - 1))
        logits = rng.normal(0, 1, (frames, classes)).astype(np.float32)
        logits[np.arange(frames), path] += rng.uniform(0, 4, frames).astype(np.float32)
        probs = np.exp(logits)
        yield (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def test_dropped_character_chances_are_the_frame_by_frame_definition_exactly():
    for probs in random_paths():
        best = probs.argmax(axis=1)
        assert dropped_character_chances(probs, best).tolist() == dropped_frame_by_frame(probs, best)


def test_runs_start_where_the_best_class_changes():
    assert run_starts(np.array([3])).tolist() == [0]
    assert run_starts(np.array([0, 0, 2, 2, 0, 2, 1])).tolist() == [0, 2, 4, 5, 6]
    for probs in random_paths(seed=1, count=50):
        best = probs.argmax(axis=1)
        assert run_starts(best).tolist() == [t for t in range(len(best)) if t == 0 or best[t] != best[t - 1]]
