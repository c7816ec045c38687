"""Line datasets: reading, skip reports, splits by source, shards, synthetic lines."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import features

from recognition.alphabet import Alphabet
from recognition.line_data import SkipReport, iter_samples, matches_source
from recognition.text import logical_order, normalize_text
from tests.conftest import write_line_folder
from tests.rendering import font, render_line
from training import preprocess, synth
from training.corpus import TextCorpus
from training.shards import read_manifest, read_split


def test_round_trip_render_preprocess_arrays_labels(tiny_arrays):
    """render -> preprocess -> shards -> labels decode back to the transcription."""
    from training.labels import encode_labels

    manifest = read_manifest(tiny_arrays)
    alphabet = Alphabet(json.loads((tiny_arrays / "alphabet.json").read_text(encoding="utf-8"))["characters"])
    assert set("".join(line.text for line in read_split(tiny_arrays, "val"))) <= set(alphabet.characters)
    lines = read_split(tiny_arrays, "train") + read_split(tiny_arrays, "val")
    assert len(lines) == manifest["splits"]["train"]["lines"] + manifest["splits"]["val"]["lines"] == 52
    for line in lines:
        assert line.image.shape[0] == 32 and line.image.dtype == np.uint8
        # labels are stored in reading order; undoing it gives the logical text back
        # (held-out lines keep characters unseen in training in their text only)
        known = "".join(c for c in line.text if c in alphabet)
        assert logical_order(alphabet.decode(encode_labels(line.text, alphabet).tolist())) == known
        assert line.text == normalize_text(line.text)
    for entry in manifest["splits"]["train"]["shards"]:
        assert len(entry["sha256"]) == 64


def test_split_is_by_source_never_by_line(tiny_arrays):
    manifest = read_manifest(tiny_arrays)
    train_sources = set(manifest["splits"]["train"]["sources"])
    val_sources = set(manifest["splits"]["val"]["sources"])
    assert val_sources == {"books/book_naskh"} or all("book_naskh" in s for s in val_sources)
    assert not train_sources & val_sources
    assert all("book_amiri" in s for s in train_sources)


def test_matches_source_by_name_part():
    assert matches_source("openiti-gs/book_IbnAthir.Kamil/7_final", ["Kamil"])
    assert matches_source("openiti-gs/book_IbnAthir.Kamil/7_final", ["book_IbnAthir.Kamil"])
    assert not matches_source("openiti-gs/book_IbnAthir.Kamil/7_final", ["Adab"])


def test_skips_are_reported_with_reasons(tmp_path, capsys):
    src = tmp_path / "book"
    write_line_folder(src, ["قال أبو محمد", "سنة 45", "ثم دخلت سنة", "وكان عالما"], "Amiri-Regular")
    (src / "000001.gt.txt").unlink()                       # image without transcription
    (src / "000002.png").write_bytes(b"garbage")           # unreadable image
    (src / "000003.gt.txt").write_text("  \u200f \n", encoding="utf-8")  # empty after normalisation
    (src / "orphan.gt.txt").write_text("نص", encoding="utf-8")          # transcription without image
    out = tmp_path / "arrays"
    preprocess.main([str(src), "--out", str(out), "--workers", "1"])
    skipped = read_manifest(out)["skipped"]["by_reason"]
    assert skipped == {"missing image": 1, "missing transcription": 1, "empty transcription": 1,
                       "unreadable image (not_an_image)": 1}
    assert read_manifest(out)["splits"]["train"]["lines"] == 1
    report = capsys.readouterr().out
    assert "skipped: 4" in report and "missing transcription" in report


def test_training_alphabet_leaves_rare_characters_out_and_labels_follow_reading_order():
    from training.labels import alphabet_from_texts, encode_labels

    alphabet = alphabet_from_texts(["باب كتاب", "كتاب ڤ 12", "باب 12"], min_count=2)
    assert "ڤ" not in alphabet and set("باتك 12") <= set(alphabet.characters)
    labels = encode_labels("باب 12", alphabet)
    # reading order: the Arabic from the right, then the number's digits met from its right end
    assert alphabet.decode(labels.tolist()) == "باب 21"
    assert alphabet.decode(encode_labels("كتاب ڤ", alphabet).tolist()) == "كتاب "  # unknown dropped


def test_manifest_input(tmp_path):
    folder = tmp_path / "imgs"
    paths = write_line_folder(folder, ["قال", "سنة 12"], "Amiri-Regular")
    tsv = tmp_path / "lines.tsv"
    tsv.write_text(f"imgs/{paths[0].name}\tقال\nimgs/{paths[1].name}\tسنة 12\nimgs/missing.png\tنص\n",
                   encoding="utf-8")
    report = SkipReport()
    samples = list(iter_samples([str(tsv)], report))
    assert [s.text for s in samples] == ["قال", "سنة 12"]
    assert report.counts == {"missing image": 1}


def test_normalisation_unifies_decomposed_and_composed_hamza(tmp_path):
    src = tmp_path / "book"
    write_line_folder(src, ["أحمد", "أحمد"], "Amiri-Regular")
    (src / "000001.gt.txt").write_text("\u0627\u0654\u062d\u0645\u062f", encoding="utf-8")  # NFD
    out = tmp_path / "arrays"
    preprocess.main([str(src), "--out", str(out), "--workers", "1"])
    alphabet = json.loads((out / "alphabet.json").read_text(encoding="utf-8"))
    assert "\u0654" not in alphabet["characters"] and alphabet["counts"]["أ"] == 2


# -- synthetic lines ---------------------------------------------------------------

def test_shaping_is_available_and_joins_letters():
    assert features.check("raqm")
    synth.require_shaping()
    joined = render_line("بببب", pad=0)
    isolated = render_line("\u200c".join("بببب"), pad=0)  # ZWNJ: same letters, no joining
    assert joined.shape[1] < 0.75 * isolated.shape[1]


def test_missing_shaping_fails_loudly(monkeypatch):
    monkeypatch.setattr(synth.features, "check", lambda name: False)
    with pytest.raises(synth.ShapingUnavailableError, match="FriBiDi"):
        synth.require_shaping()


def test_synthesis_is_deterministic_with_a_seed():
    corpus = TextCorpus.from_paths(["datasets/corpus"])
    fonts = [font("Amiri-Regular"), font("NotoNaskhArabic-Regular"), font("Scheherazade-Regular")]
    a = synth.synthesize_line(7, 123, corpus, fonts)
    b = synth.synthesize_line(7, 123, corpus, fonts)
    c = synth.synthesize_line(8, 123, corpus, fonts)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    assert a[1] != c[1] or not np.array_equal(a[0], c[0])
    assert a[1] == normalize_text(a[1]) and not any("\u064b" <= ch <= "\u0652" for ch in a[1])


def test_a_neighbour_sliver_from_a_shorter_line_than_asked_fits():
    """A sliver of the line above or below is at most as tall as that line renders (a line of short letters
    at a small size rendered fewer rows than the sliver drawn, and 45,000 lines of a fold died on it)."""
    config = synth.SynthConfig(neighbour_probability=1.0, number_probability=0, quote_probability=0,
                               punctuation_probability=0)
    line = np.full((200, 300), 255, np.uint8)
    for seed in range(10):
        out = synth._with_neighbours(line, TextCorpus(["ا"]), font("Amiri-Regular"), 8,
                                     np.random.default_rng(seed), config)
        assert out.shape[1] == 300 and 200 < out.shape[0] < 280


def test_bulaq_type_prints_word_final_ya_dotless_only():
    assert synth.dotless_final_ya("في المعاني يجوز، النبي»") == "فى المعانى يجوز، النبى»"


def test_dotless_lines_keep_ya_in_the_label_and_draw_alif_maqsura():
    """Drawn ى, labelled ي: the model learns to read Bulaq print as the transcriptions write it."""
    corpus = TextCorpus("قال في الذي يجوز للقاضي والنبي".split())
    fonts = [font("Amiri-Regular"), font("NotoNaskhArabic-Regular")]
    plain = dict(vocalise_probability=0.0, neighbour_probability=0.0, number_probability=0.0,
                 quote_probability=0.0, punctuation_probability=0.0)
    always = synth.SynthConfig(dotless_final_ya_probability=1.0, **plain)
    never = synth.SynthConfig(dotless_final_ya_probability=0.0, **plain)
    differed = 0
    for index in range(8):
        dotless_image, label, _ = synth.synthesize_line(index, 3, corpus, fonts, always)
        dotted_image, same_label, _ = synth.synthesize_line(index, 3, corpus, fonts, never)
        assert label == same_label and "\u0649" not in label
        if synth.dotless_final_ya(label) != label:
            differed += not np.array_equal(dotless_image, dotted_image)
    assert differed >= 4


def test_amiri_draws_its_share_of_lines():
    corpus = TextCorpus("قال أبو محمد".split())
    fonts = [font("Amiri-Regular"), font("NotoNaskhArabic-Regular"), font("Scheherazade-Regular")]
    only_amiri = synth.SynthConfig(amiri_share=1.0)
    assert {synth.synthesize_line(i, 1, corpus, fonts, only_amiri)[2] for i in range(10)} == {"Amiri-Regular"}
    uniform = synth.SynthConfig(amiri_share=0.0)
    assert len({synth.synthesize_line(i, 1, corpus, fonts, uniform)[2] for i in range(30)}) == 3


def test_synth_command_writes_pairs_resumes_and_is_deterministic(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["--lines", "12", "--out", str(out), "--workers", "1", "--seed", "5",
            "--fonts", "Amiri-Regular", "NotoNaskhArabic-Regular"]
    assert synth.main(args) == 0
    assert (out / "contact-sheet.png").stat().st_size > 1000
    pngs = sorted(out.glob("0*.png"))
    assert len(pngs) == 12 and len(list(out.glob("*.gt.txt"))) == 12
    first = {p.name: p.read_bytes() for p in pngs}
    (out / "0000003.png").unlink()
    (out / "0000003.gt.txt").unlink()
    assert synth.main(args) == 0
    assert "1 lines rendered" in capsys.readouterr().out
    assert (out / "0000003.png").read_bytes() == first["0000003.png"]
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert info["fonts"] == ["Amiri-Regular", "NotoNaskhArabic-Regular"]
    # the synthetic folder is an ordinary line dataset
    arrays = tmp_path / "arrays"
    preprocess.main([str(out), "--out", str(arrays), "--workers", "1"])
    assert read_manifest(arrays)["splits"]["train"]["lines"] == 12


def test_synth_finds_its_default_corpus_from_any_directory(tmp_path, monkeypatch):
    """The shipped text is found from the package, not from the directory the command is run in."""
    monkeypatch.chdir(tmp_path)
    assert synth.main(["--lines", "2", "--out", "synth", "--workers", "1", "--fonts", "Amiri-Regular"]) == 0
    info = json.loads((tmp_path / "synth" / "synth.json").read_text(encoding="utf-8"))
    assert info["corpus"] == [str(Path(synth.__file__).resolve().parent.parent / "datasets" / "corpus")]


def test_contact_sheet(tmp_path, rendered_books):
    from training.contact_sheet import main as contact_sheet

    out = tmp_path / "sheet.png"
    synth_dir = tmp_path / "synth"
    synth.main(["--lines", "4", "--out", str(synth_dir), "--workers", "1", "--fonts", "Amiri-Regular"])
    contact_sheet([str(rendered_books), str(synth_dir), "--out", str(out), "--per-source", "2"])
    from PIL import Image

    sheet = Image.open(out)
    assert sheet.width >= 600 and sheet.height > 100
    assert Path(out).stat().st_size > 1000


def test_the_synthetic_corpus_drops_words_with_one_off_characters(tmp_path):
    """A markup character seen once in the transcriptions must not be drawn on thousands of lines."""
    (tmp_path / "a.txt").write_text("قال <ص> أبو محمد\nقال أبو ~ محمد\n", encoding="utf-8")
    corpus = TextCorpus.from_paths([str(tmp_path)])
    assert corpus.words == ["قال", "أبو", "محمد", "قال", "أبو", "محمد"]


# Lines with nothing random but their words and face: what a test of one synth option compares against.
PLAIN_LINES = dict(vocalise_probability=0.0, neighbour_probability=0.0, number_probability=0.0,
                   quote_probability=0.0, punctuation_probability=0.0, dotless_final_ya_probability=0.0)


def test_the_eulogy_glyph_is_drawn_where_the_label_spells_the_phrase():
    """ﷺ (U+FDFA) as books print it, صلى الله عليه وسلم as transcriptions write it; faces without it draw none."""
    corpus = TextCorpus("قال رسول الله فأجاب القوم".split())
    plain = PLAIN_LINES
    always = synth.SynthConfig(eulogy_ligature_probability=1.0, **plain)
    never = synth.SynthConfig(**plain)
    amiri = [font("Amiri-Regular")]
    for index in range(4):
        image, label, _ = synth.synthesize_line(index, 5, corpus, amiri, always)
        assert "صلى الله عليه وسلم" in label and synth.EULOGY_LIGATURE not in label
        assert image.shape[1] < synth.render_text(label, amiri[0], 40).shape[1] * 2   # one glyph, not the phrase
    without_glyph = [font("Scheherazade-Regular")]
    for index in range(4):
        assert "عليه وسلم" not in synth.synthesize_line(index, 5, corpus, without_glyph, always)[1]
        assert synth.synthesize_line(index, 5, corpus, amiri, never)[1] == \
            synth.synthesize_line(index, 5, corpus, amiri, synth.SynthConfig(**plain))[1]


def test_synth_records_the_eulogy_rate_and_refuses_a_share_out_of_range(tmp_path, capsys):
    with pytest.raises(SystemExit):
        synth.main(["--lines", "1", "--out", str(tmp_path / "bad"), "--eulogy-ligature-rate", "1.5"])
    assert "[0, 1]" in capsys.readouterr().err
    assert synth.main(["--lines", "2", "--out", str(tmp_path / "s"), "--workers", "1", "--fonts", "Amiri-Regular",
                       "--eulogy-ligature-rate", "1"]) == 0
    assert json.loads((tmp_path / "s" / "synth.json").read_text(encoding="utf-8"))["eulogy_ligature_rate"] == 1.0
    labels = [(tmp_path / "s" / f"{i:07d}.gt.txt").read_text(encoding="utf-8") for i in range(2)]
    assert all("صلى الله عليه وسلم" in label for label in labels)


def test_spaced_punctuation_sets_marks_french_style_and_leaves_numbers_alone():
    assert synth.spaced_punctuation("قال: «الحبج»، و«فعال» يأتي.") == "قال : « الحبج » ، و« فعال » يأتي ."
    assert synth.spaced_punctuation("سنة 3.5 هـ (5): نعم") == "سنة 3.5 هـ (5) : نعم"
    assert synth.spaced_punctuation("« كذا » .") == "« كذا » ."   # already spaced: unchanged
    assert synth.spaced_punctuation("«سنة ٥»، ج 5، سنة ٣٠٠.") == "« سنة ٥ » ، ج 5 ، سنة ٣٠٠ ."  # after digits too
    assert synth.spaced_punctuation("كذا... قال؟! الحبج».") == "كذا ... قال ؟! الحبج » ."  # runs stay together


def test_spaced_lines_draw_the_gaps_their_labels_hold_and_rate_zero_keeps_earlier_lines():
    corpus = TextCorpus("قال: «الحبج»، ونعم. فأجاب القوم".split())
    amiri = [font("Amiri-Regular")]
    plain = PLAIN_LINES
    spaced = synth.SynthConfig(spaced_punctuation_probability=1.0, **plain)
    marked = 0
    for index in range(6):
        image, label, _ = synth.synthesize_line(index, 5, corpus, amiri, spaced)
        assert label == synth.spaced_punctuation(label)
        tight = synth.synthesize_line(index, 5, corpus, amiri, synth.SynthConfig(**plain))[1]
        if label != tight:
            marked += 1
            assert label.replace(" ", "") == tight.replace(" ", "")
    assert marked  # some sampled lines had marks to space
    default = synth.SynthConfig()
    assert default.spaced_punctuation_probability == 0.0  # the recipe's lines: no extra random draw
    with pytest.raises(SystemExit):
        synth.main(["--lines", "1", "--out", "unused", "--spaced-punctuation-rate", "2"])


def test_hamza_omission_draws_some_seated_alifs_bare_while_the_label_keeps_them():
    """Editions print أنخت, شأو as انخت, شاو; transcriptions restore the hamza, so the label must keep it."""
    corpus = TextCorpus("أنخت إذا شأو أرطى فأجاب أي أن إلى".split())
    amiri = [font("Amiri-Regular")]
    plain = PLAIN_LINES
    always = synth.SynthConfig(hamza_omission_probability=1.0, **plain)
    rng = np.random.default_rng(3)
    text = "أنخت إذا شأو أرطى أي أن إلى أو"   # eight seated alifs
    drawn = [synth.without_some_hamzas(text, rng) for _ in range(50)]
    assert all(d.replace("أ", "ا").replace("إ", "ا") == text.replace("أ", "ا").replace("إ", "ا") for d in drawn)
    seated = sum(d.count("أ") + d.count("إ") for d in drawn)
    assert 0.3 * 400 < seated < 0.7 * 400   # about half dropped, each on its own draw
    assert len(set(drawn)) > 10
    for index in range(6):   # the label keeps every hamza, whatever the image shows
        assert synth.synthesize_line(index, 5, corpus, amiri, always)[1] == \
            synth.synthesize_line(index, 5, corpus, amiri, synth.SynthConfig(**plain))[1]
    assert synth.SynthConfig().hamza_omission_probability == 0.0  # the recipe's lines: no extra random draw
    with pytest.raises(SystemExit):
        synth.main(["--lines", "1", "--out", "unused", "--hamza-omission-rate", "-0.1"])
