"""CTC prefix beam search with a character language model (``recognition.beam_search``)."""

import re
from pathlib import Path

import numpy as np
import pytest

from recognition import Recognizer
from recognition.alphabet import Alphabet
from recognition.beam_search import BeamSearchSettings, CTCBeamSearch, aligned_path, best_alignment
from recognition.char_lm import CharacterLanguageModel, LanguageModelError, save
from recognition.ctc import decode_line, decode_path, greedy_decode
from recognition.metrics import edit_distance
from tests.rendering import png_bytes, render_line
from training import char_lm

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_INT8 = ROOT / "models" / "arabic-crnn-v2-int8.onnx"
LINES = ["قال أبو محمد", "قال أبو بكر", "وقال محمد بن علي", "قال ابن علي", "قال الفراء"] * 4
ALPHABET = Alphabet(sorted(set("".join(LINES)) | set("عغ0123456789")))


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "lm.npz"
    header, tables = char_lm.build(LINES, order=4)
    save(path, header, tables)
    return CharacterLanguageModel.load(path)


def frames_for(text: str, alphabet: Alphabet = ALPHABET, p: float = 0.95, blanks: int = 1) -> np.ndarray:
    """Peaked probabilities that spell ``text``: each character on one frame, then ``blanks`` blank frames."""
    path = []
    for label in alphabet.encode(text):
        path += [label] + [0] * blanks
    probs = np.full((len(path), alphabet.num_classes), (1 - p) / (alphabet.num_classes - 1))
    probs[np.arange(len(path)), path] = p
    return probs


def random_peaked(rng, frames: int, classes: int, p: float = 0.9) -> np.ndarray:
    """A frame path of random blanks, runs and repeats, each frame ``p`` on its class, the rest spread at random."""
    path = rng.choice(classes, size=frames, p=[0.5] + [0.5 / (classes - 1)] * (classes - 1))
    noise = rng.dirichlet(np.ones(classes - 1), size=frames) * (1 - p)
    probs = np.zeros((frames, classes))
    for t, label in enumerate(path):
        probs[t, np.arange(classes) != label] = noise[t]
        probs[t, label] = p
    return probs


@pytest.mark.parametrize("beam", [1, 8])
def test_with_lm_weight_0_a_peaked_distribution_reads_as_greedy_with_the_same_confidences(lm, beam):
    rng = np.random.default_rng(15)
    for language_model in (lm, None):
        search = CTCBeamSearch(ALPHABET, language_model, BeamSearchSettings(beam=beam, alpha=0.0, beta=0.0,
                                                                            min_prob=1e-4))
        for _ in range(40):
            probs = random_peaked(rng, int(rng.integers(1, 60)), ALPHABET.num_classes)
            assert search.decode(probs) == greedy_decode(probs)


def test_the_lm_decides_where_the_image_is_ambiguous(lm):
    probs = frames_for("قال أبو محمد")
    ambiguous = 2  # the frame of "ا", the second character
    alef, ain = ALPHABET.encode("اع")
    probs[ambiguous] = 0.0
    probs[ambiguous, ain], probs[ambiguous, alef] = 0.55, 0.45  # the image leans to "قعل"
    greedy = decode_line(probs, ALPHABET, mirrored=False)
    assert greedy.text == "قعل أبو محمد"
    with_lm = decode_line(probs, ALPHABET, mirrored=False, decoder=CTCBeamSearch(ALPHABET, lm))
    assert with_lm.text == "قال أبو محمد"
    # the character the LM chose carries the image's doubt, the others their greedy confidences
    assert with_lm.characters[1].confidence == pytest.approx(0.45)
    assert [c.confidence for i, c in enumerate(with_lm.characters) if i != 1] == \
        [c.confidence for i, c in enumerate(greedy.characters) if i != 1]
    # and the LM does not overrule a clear image
    clear = frames_for("قعل أبو محمد")
    assert decode_line(clear, ALPHABET, mirrored=False, decoder=CTCBeamSearch(ALPHABET, lm)).text == "قعل أبو محمد"


def test_decoding_is_deterministic_whatever_was_decoded_before(lm):
    rng = np.random.default_rng(7)
    lines = [random_peaked(rng, 40, ALPHABET.num_classes, p=0.5) for _ in range(12)]
    first = [CTCBeamSearch(ALPHABET, lm, BeamSearchSettings(beam=4, alpha=0.8)).decode(p) for p in lines]
    shared = CTCBeamSearch(ALPHABET, lm, BeamSearchSettings(beam=4, alpha=0.8))
    backwards = [shared.decode(p) for p in reversed(lines)]
    assert first == backwards[::-1] == [shared.decode(p) for p in lines]


def test_an_exact_tie_goes_to_the_lower_class_as_in_greedy():
    probs = np.zeros((3, ALPHABET.num_classes))
    probs[:, 0] = 1.0
    probs[1, 0], probs[1, 3], probs[1, 5] = 0.0, 0.5, 0.5
    assert CTCBeamSearch(ALPHABET).search(probs) == greedy_decode(probs).labels == (3,)


def test_the_alignment_of_other_labels_is_their_best_path():
    probs = frames_for("قال", blanks=2)
    labels = tuple(ALPHABET.encode("قلل"))  # a repeat needs a blank between
    path = best_alignment(probs, labels)
    assert decode_path(probs, path).labels == labels
    assert decode_path(probs, aligned_path(probs, probs.argmax(axis=1), labels)).labels == labels
    assert np.array_equal(aligned_path(probs, probs.argmax(axis=1), labels), path)


def test_settings_are_checked():
    with pytest.raises(ValueError):
        BeamSearchSettings(beam=0)
    with pytest.raises(ValueError):
        BeamSearchSettings(alpha=-1.0)


def test_settings_must_be_finite():
    for bad in ({"alpha": float("nan")}, {"alpha": float("inf")}, {"beta": float("nan")}, {"prune": float("nan")}):
        with pytest.raises(ValueError, match="finite"):
            BeamSearchSettings(**bad)


def never_ending_lm() -> CharacterLanguageModel:
    """A unigram model giving the end symbol and unseen characters probability 0 (``load`` refuses such a
    file: a backoff of 0), built in memory to show decoding survives it all the same."""
    header, tables = char_lm.build(LINES, order=1)
    unigram = tables[0]
    keep = unigram.symbols != 1  # </s> is symbol 1
    probs = unigram.probs[keep] / unigram.probs[keep].sum()
    table = type(unigram)(unigram.contexts, np.zeros(1, np.float32), np.array([0, int(keep.sum())]),
                          unigram.symbols[keep], probs.astype(np.float32))
    model = CharacterLanguageModel(header, [table])
    assert model.prob(model.start(), 1) == 0.0 and model.prob(model.start(), model.index["<unk>"]) == 0.0
    return model


def test_an_lm_giving_the_end_of_a_line_probability_0_does_not_break_decoding():
    model = never_ending_lm()
    probs = frames_for("قال أبو بكر")
    # Every prefix scores -inf at the end: no math domain error (it was one on every line), a reading all the same.
    line = CTCBeamSearch(ALPHABET, model, BeamSearchSettings(alpha=0.2)).decode(probs)
    assert all(0 < label < ALPHABET.num_classes for label in line.labels)


def test_with_weight_0_an_lm_giving_a_character_probability_0_has_no_say():
    model = never_ending_lm()
    probs = frames_for("قال غبو بكر")  # غ is no training character: <unk>, probability 0 under this model
    settings = BeamSearchSettings(alpha=0.0, beta=0.0)
    assert CTCBeamSearch(ALPHABET, model, settings).decode(probs) == greedy_decode(probs)
    assert ALPHABET.decode(greedy_decode(probs).labels) == "قال غبو بكر"


def test_an_lm_built_on_other_text_conventions_is_refused(lm):
    with pytest.raises(LanguageModelError, match="normalised as"):
        CTCBeamSearch(ALPHABET, lm, text_normalisation="keep-harakat-v9")


@pytest.fixture(scope="module")
def corpus_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "corpus.npz"
    assert char_lm.main(["build", "--corpus", str(ROOT / "datasets" / "corpus"), "--order", "5",
                         "--min-count", "1", "--out", str(path)]) == 0
    return path


def test_the_recogniser_reads_a_rendered_line_with_the_lm_and_greedy_by_default(corpus_lm):
    text = "قال أبو محمد: حدثنا أصحابنا عن شيوخهم"
    image = png_bytes(render_line(text, "Amiri-Regular", size=44))
    greedy = Recognizer(SHIPPED_INT8, threads=1)
    assert greedy.decoder is None  # greedy stays the default
    with_lm = Recognizer(SHIPPED_INT8, threads=1, language_model=corpus_lm)
    assert isinstance(with_lm.decoder, CTCBeamSearch) and with_lm.decoder.lm.source == str(corpus_lm)
    result = with_lm.recognize_one(image)
    assert result.text == text
    assert len(result.characters) == len(result.text) and 0.0 < result.confidence <= 1.0
    assert all(0.0 <= c.confidence <= 1.0 for c in result.characters)
    assert greedy.recognize_one(image) == result  # read alike, reported alike (confidences included)
    with pytest.raises(LanguageModelError, match="no language model file"):
        Recognizer(SHIPPED_INT8, language_model=corpus_lm.with_name("missing.npz"))


@pytest.mark.parametrize("text", ["وتوفي سنة 463 هـ ببغداد", "انظر الجزء 12 من الكتاب", "قال ابن الأثير (3) في كتابه",
                                  "ولد سنة 1250 ومات سنة 1302"])
def test_with_the_shipped_lm_numbers_keep_their_logical_order(text):
    image = png_bytes(render_line(text, "Amiri-Regular", size=44))
    greedy = Recognizer(SHIPPED_INT8, threads=1).recognize_one(image).text
    with_lm = Recognizer(SHIPPED_INT8, threads=1, language_model=ROOT / "models" / "arabic-char-lm.npz")
    read = with_lm.recognize_one(image).text
    assert re.findall(r"\d+", read) == re.findall(r"\d+", text)  # folded digits: runs neither reversed nor changed
    assert edit_distance(text, read) <= edit_distance(text, greedy)
