"""Choosing a book's decoding on its reviewed lines (``training.tune_decoding``, ``bench.adaptation_decoding``)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from recognition.alphabet import Alphabet
from recognition.char_lm import UNK, CharacterLanguageModel
from recognition.line_data import LineSample
from training import char_lm, tune_decoding

LINES = ["قال أبو محمد", "قال أبو بكر", "وقال محمد بن علي", "قال ابن علي", "قال الفراء"] * 4
ALPHABET = Alphabet(sorted(set("".join(LINES)) | set("عغزظ")))
# A stand-in for a Recognizer: what reading a model's outputs needs of it (no calibration, no book conventions).
RECOGNIZER = SimpleNamespace(info=SimpleNamespace(alphabet=ALPHABET, mirror=False), calibration=None,
                             conventions=None)


@pytest.fixture(scope="module")
def lm():
    return CharacterLanguageModel(*char_lm.build(LINES, order=4))


def frames_for(text: str, p: float = 0.95) -> np.ndarray:
    """Peaked probabilities that spell ``text``: each character on one frame, then a blank frame."""
    path = []
    for label in ALPHABET.encode(text):
        path += [label, 0]
    probs = np.full((len(path), ALPHABET.num_classes), (1 - p) / (ALPHABET.num_classes - 1))
    probs[np.arange(len(path)), path] = p
    return probs


def doubtful(text: str) -> np.ndarray:
    """``text`` whose second character ("ا") the image leans to read as "ع" (0.55 against 0.45)."""
    probs = frames_for(text)
    alef, ain = ALPHABET.encode("اع")
    probs[2] = 0.0
    probs[2, ain], probs[2, alef] = 0.55, 0.45
    return probs


def samples(texts):
    return [LineSample(Path(f"{i:03d}.png"), text, "book") for i, text in enumerate(texts)]


def test_greedy_is_kept_when_the_lm_does_not_help(lm):
    texts = ["قال أبو محمد", "قال ابن علي", "وقال محمد بن علي"]
    chosen, table = tune_decoding.tune(RECOGNIZER, [frames_for(t) for t in texts], samples(texts), lm)
    # clear images: every decoding reads them alike, and a tie goes to greedy
    assert chosen["decoder"] == "greedy" and chosen["cer"] == 0.0 and chosen is table[0]
    assert len(table) == 1 + len(tune_decoding.ALPHAS) * len(tune_decoding.BETAS)
    assert {r["beam"] for r in table[1:]} == {tune_decoding.BEAM}


def test_a_beam_setting_with_the_lm_is_chosen_when_it_reads_better(lm):
    texts = ["قال أبو محمد", "قال ابن علي"]
    outputs = [doubtful(t) for t in texts]
    chosen, table = tune_decoding.tune(RECOGNIZER, outputs, samples(texts), lm)
    assert table[0]["decoder"] == "greedy" and table[0]["cer"] > 0          # greedy reads "قعل"
    assert chosen["decoder"] == "beam + LM" and chosen["alpha"] > 0 and chosen["cer"] == 0.0
    # the first of the best in grid order: the smallest weight, then the smallest bonus, that does it
    best = [r for r in table if r["cer"] == 0.0]
    assert chosen is best[0]
    decoder = tune_decoding.decoder_for(RECOGNIZER, chosen, lm)
    assert [r.text for r in tune_decoding.read(RECOGNIZER, outputs, decoder)] == texts


def test_without_an_lm_only_the_bonus_is_tried():
    texts = ["قال أبو محمد"]
    chosen, table = tune_decoding.tune(RECOGNIZER, [frames_for(t) for t in texts], samples(texts), None)
    assert {r["alpha"] for r in table[1:]} == {0.0} and chosen["decoder"] == "greedy"


def test_the_book_lm_reads_the_general_text_and_the_given_lines_only():
    general = ["قال أبو محمد", "قال ابن علي"]
    given, not_given = samples(["زيد بن علي"]), samples(["ظغ"])   # letters found in one line each
    book_lm = tune_decoding.build_book_lm(general, tune_decoding.reviewed_text(given), order=3)
    assert "ز" in book_lm.symbols
    assert not set(not_given[0].text) & set(book_lm.symbols)
    assert book_lm.encode("ظ") == bytes([book_lm.index[UNK]])
    assert book_lm.header["training_text"] == {"lines": 3, "general_lines": 2, "reviewed_lines": 1}


def test_the_adaptation_bench_chooses_on_unseen_corrected_lines_and_gives_the_book_lm_only_the_trained_on(
        lm, monkeypatch):
    from bench import adaptation, adaptation_decoding

    texts = ["قال أبو محمد", "قال أبو بكر", "وقال محمد بن علي", "قال ابن علي", "قال الفراء"] * 2
    book = samples(texts)
    corrected, rest = book[:5], book[5:]
    outputs = {id(s): doubtful(s.text) for s in book}
    read_lines = []

    def fake_outputs(model, lines):
        read_lines.append(list(lines))
        return RECOGNIZER, [outputs[id(s)] for s in lines], [1.0] * len(lines)

    built_from = []

    def spy_build(general, reviewed, order, min_count=1):
        built_from.append(list(reviewed))
        return tune_decoding.build_book_lm(general, reviewed, order, min_count)

    monkeypatch.setattr(adaptation_decoding, "model_outputs", fake_outputs)
    monkeypatch.setattr(adaptation_decoding, "build_book_lm", spy_build)
    train, heldout = adaptation.split_corrected(corrected)
    assert len(train) == 4 and heldout == [corrected[4]]

    # an adapted model (N = 5): chosen on the held-out fifth, the book LM given the four lines trained on
    report = adaptation_decoding.tune_point(Path("m.onnx"), corrected, train, train, rest, lm, LINES[:3],
                                            lambda message: None)
    assert read_lines == [heldout + rest + train]
    assert built_from == [[s.text for s in train]]
    assert report["tuned_on"] == {"general_lm": 1, "book_lm": 1}
    assert report["book_lm"]["reviewed_lines"] == 4 and report["book_lm"]["general_lines"] == 3
    assert set(report["rest"]) == {"greedy", "chosen", "shipped settings", "chosen, book LM",
                                   "shipped settings, book LM", "chosen on all N"}
    assert report["all_corrected"]["trained_on_greedy"]["lines"] == 4
    assert report["rest"]["chosen"]["lines"] == len(rest)

    # the base model (N = 0) saw none of them: the general LM's settings are chosen on all the corrected lines
    read_lines.clear()
    report = adaptation_decoding.tune_point(Path("m.onnx"), corrected, [], train, rest, lm, None, lambda m: None)
    assert read_lines == [corrected + rest] and report["tuned_on"] == {"general_lm": 5}
    assert report["chosen"]["decoder"] == "beam + LM"
    assert report["rest"]["chosen"]["cer"] < report["rest"]["greedy"]["cer"]


@pytest.mark.parametrize("options", [["--book-lm-lines", "trained"], ["--book-lm-exclude", "Book"],
                                     ["--book-lm-corpus", "corpus"]])
def test_book_lm_options_are_refused_where_they_would_be_ignored_or_leak_the_book(options, tmp_path, capsys):
    with pytest.raises(SystemExit):
        tune_decoding.main(["--model", str(tmp_path / "m.onnx"), "--lines", str(tmp_path / "lines"), *options])
    assert "--book-lm-corpus" in capsys.readouterr().err
