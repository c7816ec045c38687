import numpy as np
import pytest

from recognition.alphabet import Alphabet
from recognition.ctc import decode_text, greedy_decode


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


def test_line_confidence_is_the_geometric_mean_of_best_path_frames():
    probs = one_hot([1, 0, 2, 0])
    probs[2] = [0.1, 0.1, 0.5, 0.3]
    expected = (0.9 * 0.9 * 0.5 * 0.9) ** 0.25
    assert greedy_decode(probs).confidence == pytest.approx(expected, rel=1e-6)


def test_all_blank_is_empty_text():
    text, decoded = decode_text(one_hot([0, 0, 0]), Alphabet(["ا", "ب", "ت"]))
    assert text == "" and decoded.labels == ()


def test_decode_text_maps_labels_through_the_alphabet():
    text, _ = decode_text(one_hot([3, 0, 1, 1, 2]), Alphabet(["ا", "ب", "ت"]))
    assert text == "تاب"


def test_rejects_wrong_rank():
    with pytest.raises(ValueError):
        greedy_decode(np.zeros((2, 3, 4)))
