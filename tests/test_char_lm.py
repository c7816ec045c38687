"""The character language model: built from text by ``training.char_lm``, read by ``recognition.char_lm``."""

import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recognition import char_lm as char_lm_file
from recognition.char_lm import BOS, DIGIT, EOS, LTR, UNK, CharacterLanguageModel, LanguageModelError, fold, save
from training import char_lm

TINY = ["قال أبو محمد", "قال أبو بكر", "وقال محمد بن علي", "سنة 463 هـ", "قال ابن علي"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "tiny.npz"
    header, tables = char_lm.build(TINY, order=4)
    save(path, {**header, "training_text": {"lines": len(TINY)}}, tables)
    return CharacterLanguageModel.load(path)


@pytest.mark.parametrize("context", ["", "قا", "قال أبو", "محمد بن", "zzz", "سنة 4"])
def test_a_context_s_probabilities_sum_to_one_over_the_symbols(tiny, context):
    encoded = tiny.start() + tiny.encode(context)
    distribution = tiny.distribution(encoded)
    assert distribution.sum() == pytest.approx(1.0, abs=1e-6)
    assert distribution[tiny.index[BOS]] == 0.0  # a context, never a prediction
    assert np.all(np.delete(distribution, tiny.index[BOS]) > 0)  # smoothed: nothing is impossible, not even an unseen character
    one_at_a_time = [tiny.prob(encoded, s) for s in range(len(tiny.symbols))]
    assert one_at_a_time == pytest.approx(distribution.tolist(), abs=1e-9)


def test_a_seen_sequence_scores_higher_than_an_unseen_one(tiny):
    assert tiny.score("قال أبو محمد") > tiny.score("قال أبو مخمد") > tiny.score("دمحم وبأ لاق")
    assert tiny.log_prob(tiny.start() + tiny.encode("قال أبو محم"), "د") > math.log(0.5)


def test_digits_and_latin_letters_fold_so_a_reversed_run_reads_the_same():
    assert {fold(c) for c in "0123456789٠٣٩"} == {DIGIT}
    assert fold("p") == fold("Q") == LTR
    assert fold("ب") == "ب" and fold(" ") == " " and fold("«") == "«"


def test_the_file_says_what_it_is(tmp_path):
    corpus = tmp_path / "corpus"
    for book, lines in (("book_A", TINY[:3]), ("book_Held", ["غيظ شديد"]), ("book_B", TINY[3:])):
        (corpus / book).mkdir(parents=True)
        for i, line in enumerate(lines):
            (corpus / book / f"{i:06d}.gt.txt").write_text(line + "\n", encoding="utf-8")
    out = tmp_path / "lm.npz"
    assert char_lm.main(["build", "--corpus", str(corpus), "--exclude", "Held", "--order", "3",
                         "--min-count", "1", "--out", str(out)]) == 0
    model = CharacterLanguageModel.load(out)
    header = model.header
    assert header["order"] == 3 and model.order == 3
    assert header["training_text"]["sources"] == {"corpus/book_A": 3, "corpus/book_B": 2}
    assert header["training_text"]["lines"] == 5 and header["training_text"]["excluded"] == ["Held"]
    assert header["text_normalisation"] == "nfc-fold-presentation-forms-drop-harakat-ascii-digits-v2"
    assert header["smoothing"] == "interpolated Kneser-Ney" and header["character_order"] == "logical"
    assert "غ" not in model.symbols and "ش" not in model.symbols  # only in the excluded book
    assert model.encode("غاب") == bytes([model.index[UNK], *model.encode("اب")])


def test_pruning_keeps_every_context_summing_to_one_and_shrinks_the_model():
    lines = TINY * 3 + ["كان في سنة ثلاث", "وفيها مات فلان"]
    full_header, _ = char_lm.build(lines, 5, min_count=1)
    header, tables = char_lm.build(lines, 5, min_count=4)
    pruned = CharacterLanguageModel(header, tables)
    assert sum(header["ngrams"]) < sum(full_header["ngrams"])
    for context in ["", "كان في", "قال أبو", "وفيها"]:
        assert pruned.distribution(pruned.start() + pruned.encode(context)).sum() == pytest.approx(1.0, abs=1e-6)
    assert pruned.score("قال أبو محمد") > pruned.score("كان أبو مات")


def corrupt(path, tmp_path, name, change):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    target = tmp_path / name
    with open(target, "wb") as f:
        np.savez(f, **arrays)
    return target


def test_a_crafted_or_corrupt_file_is_refused_with_a_clear_error(tiny, tmp_path):
    def header(change):
        def edit(arrays):
            data = json.loads(str(arrays["header"]))
            change(data)
            arrays["header"] = np.array(json.dumps(data))
        return edit

    def skew(arrays):
        arrays["o2_probs"] = arrays["o2_probs"] * 1.5

    def beyond(arrays):
        arrays["o3_symbols"] = arrays["o3_symbols"].copy()
        arrays["o3_symbols"][0] = 250

    cases = {  # name: (change, what the message says)
        "not-a-zip": (None, "not a language model file"),
        "other-format": (header(lambda h: h.update(format="kenlm")), "not a arabic-ocr-char-lm version 1"),
        "newer": (header(lambda h: h.update(version=99)), "version 99"),
        "no-order-4": (lambda a: a.pop("o4_probs"), "corrupt language model"),
        "skewed": (skew, "do not sum to 1"),
        "symbol-beyond": (beyond, "symbol index beyond"),
        "too-few-specials": (header(lambda h: h.update(symbols=h["symbols"][1:])), "starting with <s>"),
        "no-convention": (header(lambda h: h.pop("text_normalisation")), "text normalisation"),
        "float-contexts": (lambda a: a.update(o2_contexts=a["o2_contexts"].astype(np.float32)), "array types"),
    }
    for name, (change, reason) in cases.items():
        if change is None:
            path = tmp_path / name
            path.write_bytes(b"PK\x03\x04 not really a zip")
        else:
            path = corrupt(tiny.source, tmp_path, name + ".npz", change)
        with pytest.raises(LanguageModelError) as caught:
            CharacterLanguageModel.load(path)
        assert str(path) in str(caught.value) and reason in str(caught.value), (name, str(caught.value))
    with pytest.raises(LanguageModelError, match="no language model file"):
        CharacterLanguageModel.load(tmp_path / "missing.npz")


def test_a_hostile_file_is_refused_with_a_clear_error_never_another_exception(tiny, tmp_path, monkeypatch):
    """Files made to break the reader: each must end in ``LanguageModelError`` naming the file."""
    with np.load(tiny.source) as data:
        arrays = {k: data[k] for k in data.files}

    def write(name, members: dict[str, bytes]):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            for member, payload in members.items():
                archive.writestr(member + ".npy", payload)
        return path

    def npy(array) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()

    plain = tmp_path / "plain.npz"
    with open(plain, "wb") as f:  # one array, not an archive: np.load would give an ndarray
        np.save(f, np.arange(10))
    infinite_order = write("infinite-order.npz", {**{k: npy(v) for k, v in arrays.items()},
                                                  "header": npy(np.array(re.sub(
                                                      r'"order": \d+', '"order": 1e400', str(arrays["header"]))))})
    huge_header = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge_header, {"descr": "<f4", "fortran_order": False,
                                                       "shape": (10 ** 12,)})
    huge_shape = write("huge-shape.npz", {**{k: npy(v) for k, v in arrays.items()},
                                          "o2_probs": huge_header.getvalue() + b"\0" * 64})
    offsets = arrays["o2_offsets"].astype(np.uint32)
    offsets[1] = offsets[2] + 1  # unsigned: the difference after it wraps to a large positive number
    wrapped = write("wrapped-offsets.npz", {**{k: npy(v) for k, v in arrays.items()}, "o2_offsets": npy(offsets)})
    no_backoff = arrays["o2_backoff"].copy()
    no_backoff[0] = 0.0
    zero_backoff = write("zero-backoff.npz", {**{k: npy(v) for k, v in arrays.items()},
                                              "o2_backoff": npy(no_backoff)})
    cases = {plain: "not a language model file", infinite_order: "order must be a whole number",
             huge_shape: "more than its member holds", wrapped: "offsets out of order",
             zero_backoff: "backoff weight of 0"}
    for path, reason in cases.items():
        with pytest.raises(LanguageModelError) as caught:
            CharacterLanguageModel.load(path)
        assert str(path) in str(caught.value) and reason in str(caught.value), (path.name, str(caught.value))
    monkeypatch.setattr(char_lm_file, "MAX_ARRAY_BYTES", 4096)
    with pytest.raises(LanguageModelError, match="more than 4096 bytes uncompressed"):
        CharacterLanguageModel.load(tiny.source)
    monkeypatch.setattr(char_lm_file, "MAX_ARRAY_BYTES", 64 << 20)
    monkeypatch.setattr(char_lm_file, "MAX_NGRAMS", 100)
    with pytest.raises(LanguageModelError, match="more than 100 n-grams"):
        CharacterLanguageModel.load(tiny.source)


def test_an_object_array_is_not_unpickled(tiny, tmp_path):
    path = corrupt(tiny.source, tmp_path, "pickled.npz",
                   lambda a: a.update(header=np.array([{"format": "arabic-ocr-char-lm"}], dtype=object)))
    with pytest.raises(LanguageModelError):
        CharacterLanguageModel.load(path)


def test_specials_are_fixed(tiny):
    assert tiny.symbols[:5] == (BOS, EOS, UNK, DIGIT, LTR)


def test_the_shipped_lm_never_read_the_held_out_book():
    model = CharacterLanguageModel.load(Path(__file__).resolve().parent.parent / "models" / "arabic-char-lm.npz")
    text = model.header["training_text"]
    assert text["excluded"] == ["IbnQutayba"]
    assert not any("IbnQutayba" in source for source in text["sources"])
    assert sum(text["sources"].values()) == text["lines"] > 4000
    assert model.order == 5 and model.header["pruning"]["min_count"] == 1
    assert model.score("قال أبو محمد") > model.score("دمحم وبأ لاق")
