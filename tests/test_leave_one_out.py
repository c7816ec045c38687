"""Leave-one-book-out on three rendered books with the tiny model: folds, sessions, summary, refusals."""

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from recognition.line_data import SkipReport, iter_samples
from recognition.text import normalize_text
from tests.conftest import CORPUS_LINES, short_lines, write_line_folder
from training import leave_one_out, model_card
from training.corpus import corpus_name, iter_text_files
from training.loo_fold import STEPS, Fold
from training.loo_recipe import Recipe, RecipeError, check_init_from, corpus_fingerprint, parse_train_args
from training.loo_report import format_summary, summarise
from training.loo_steps import MAX_SHARED_LINES, FoldError, Series, check_corpus, synthetic_arrays
from training.shards import read_split
from training.text_overlap import DIFFERENT_BOOKS_SHARE, lines_sharing_runs, word_runs

RECIPE = ["--preset", "tiny", "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "4", "--lr", "3e-3",
          "--no-augment", "--min-char-count", "1", "--lr-schedule", "cosine", "--patience", "2"]
BOOKS = ("book_amiri", "book_naskh", "book_noto")
RUN = ("book_amiri", "book_naskh")  # the folds run: two of three, so the summary is of some folds


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """Three books of six-word lines cut from different parts of the shipped corpus, in three typefaces."""
    words = " ".join(CORPUS_LINES).split()
    root = tmp_path_factory.mktemp("loo-books") / "books"
    for book, start, count, face in zip(BOOKS, (0, 100, 200), (10, 8, 8),
                                        ("Amiri-Regular", "Scheherazade-Regular", "NotoNaskhArabic-Regular")):
        write_line_folder(root / book, [" ".join(words[start + 6 * i: start + 6 * (i + 1)]) for i in range(count)], face)
    return root


@pytest.fixture(scope="module")
def series(books, tmp_path_factory):
    """book_naskh's fold taken one step per session up to its first epoch of two, then it and book_amiri's to
    their end; book_noto's fold is never started."""
    out = tmp_path_factory.mktemp("loo") / "series"
    command = [str(books), "--out", str(out), "--synth-lines", "40", "--corpus", "--threads", "1"]
    sessions = [leave_one_out.main([*command, "--books", "naskh", "--minutes-per-session", "0", "--", *RECIPE])
                for _ in range(4)]  # real lines, synthetic lines, their arrays, one epoch
    interrupted = json.loads((out / "book_naskh" / "run" / "state.json").read_text(encoding="utf-8"))
    final = leave_one_out.main([*command, "--books", *RUN, "--", *RECIPE])
    return SimpleNamespace(books=books, out=out, sessions=sessions, interrupted=interrupted, final=final)


def fold_record(series, book):
    return json.loads((series.out / book / "fold.json").read_text(encoding="utf-8"))


def texts_of(folder):
    return [normalize_text(s.text) for s in iter_samples([str(folder)], SkipReport())]


@pytest.mark.slow
def test_each_fold_keeps_its_book_out_of_training_and_out_of_its_synthetic_text(series):
    for book in RUN:
        fold = series.out / book
        held_out = set(texts_of(series.books / book))
        assert {line.text for line in read_split(fold / "real", "val")} == held_out
        trained_on = {line.text for line in read_split(fold / "real", "train")}
        assert trained_on and not trained_on & held_out
        assert trained_on == {t for other in BOOKS if other != book for t in texts_of(series.books / other)}
        synthetic = texts_of(fold / "synth")
        assert len(synthetic) == 40
        runs = {r for text in synthetic for r in word_runs(text.split(), 4)}
        held_out_runs = {r for text in held_out for r in word_runs(text.split(), 4)}
        other_runs = {r for other in BOOKS if other != book for text in texts_of(series.books / other)
                      for r in word_runs(text.split(), 4)}
        assert not runs & held_out_runs, book
        assert runs & other_runs, book  # the same check finds the books the lines were drawn from
        state = json.loads((fold / "run" / "state.json").read_text(encoding="utf-8"))
        assert state["args"]["data"] == [str(fold / "real")] and state["args"]["synth"] == [str(fold / "synth-arrays")]


@pytest.mark.slow
def test_sessions_end_cleanly_and_the_next_one_continues_the_interrupted_training(series):
    assert series.sessions == [3, 3, 3, 3] and series.final == 0
    assert series.interrupted["epoch"] == 1  # the fourth session ran one epoch of two
    record = fold_record(series, "book_naskh")
    assert [s["epochs"] for s in record["steps"]["train"]["sessions"]] == [[0, 1], [1, 2]]
    for step in ("real", "synth", "synth-arrays", "export", "evaluate"):
        assert len(record["steps"][step]["sessions"]) == 1, step  # none done twice
    resumed = json.loads((series.out / "book_naskh" / "run" / "state.json").read_text(encoding="utf-8"))
    uninterrupted = json.loads((series.out / "book_amiri" / "run" / "state.json").read_text(encoding="utf-8"))
    assert [(h["epoch"], h["step"]) for h in resumed["history"]] == [(1, 3), (2, 6)]
    assert [h["lr"] for h in resumed["history"]] == pytest.approx([h["lr"] for h in uninterrupted["history"]])
    assert all(s["machine"] for s in record["steps"]["train"]["sessions"])


@pytest.mark.slow
def test_a_second_invocation_redoes_nothing_finished(series, capsys):
    records = {book: (series.out / book / "fold.json").read_text(encoding="utf-8") for book in RUN}
    evaluated = {book: os.stat(series.out / book / "evaluation" / "evaluation.json").st_mtime_ns for book in RUN}
    assert leave_one_out.main([str(series.books), "--out", str(series.out), "--books", *RUN]) == 0  # recorded recipe
    assert records == {book: (series.out / book / "fold.json").read_text(encoding="utf-8") for book in RUN}
    assert evaluated == {book: os.stat(series.out / book / "evaluation" / "evaluation.json").st_mtime_ns
                         for book in RUN}
    capsys.readouterr()
    assert leave_one_out.main(["--out", str(series.out), "--status"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("book_")}
    for book in RUN:
        cer = fold_record(series, book)["held_out"]["cer"]
        assert " 6/6, done " in rows[book] and " 2/2 " in rows[book] and f"{100 * cer:.2f}%" in rows[book]
    assert " 0/6, not started " in rows["book_noto"] and " 0/2 " in rows["book_noto"]


@pytest.mark.slow
def test_the_summary_gives_each_held_out_cer_their_mean_and_the_model_card_arguments(series, tmp_path):
    summary = json.loads((series.out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["folds_finished"], summary["folds"]) == (2, 3) and not summary["mixed_recipes"]
    cers = {}
    for row in summary["per_fold"]:
        evaluation = json.loads((series.out / row["book"] / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))
        assert row["cer"] == evaluation["results"][f"books/{row['book']}"]["cer"]
        cers[row["book"]] = row["cer"]
    assert sorted(cers) == list(RUN)
    assert summary["mean_cer"] == pytest.approx(sum(cers.values()) / 2, abs=1e-5)
    assert (series.out / "loo-cer.png").stat().st_size > 1000
    card = tmp_path / "MODEL_CARD.md"
    model = series.out / "book_amiri" / "model" / "loo-book_amiri.onnx"
    assert model_card.main([str(model), "--out", str(card), *summary["model_card_arguments"]]) == 0
    text = card.read_text(encoding="utf-8")
    assert f"| mean of 2 | | | {100 * summary['mean_cer']:.2f}% |" in text
    assert all(f"| {book} | `loo-{book}.onnx` |" in text for book in RUN)


@pytest.mark.slow
def test_other_train_arguments_than_the_folds_had_are_refused(series, capsys):
    recorded = (series.out / "loo.json").read_text(encoding="utf-8")
    other = [a if a != "3e-3" else "1e-3" for a in RECIPE]
    with pytest.raises(SystemExit) as refused:
        leave_one_out.main([str(series.books), "--out", str(series.out), "--", *other])
    assert refused.value.code == 2
    assert "was run with another recipe" in capsys.readouterr().err
    assert (series.out / "loo.json").read_text(encoding="utf-8") == recorded


def test_a_corpus_holding_the_held_out_books_text_is_refused_before_any_work(books, tmp_path, capsys):
    out = tmp_path / "loo"
    with pytest.raises(SystemExit) as refused:  # the books were cut from the shipped corpus
        leave_one_out.main([str(books), "--out", str(out), "--corpus", leave_one_out.DEFAULT_CORPUS, "--", *RECIPE])
    assert refused.value.code == 2
    said = capsys.readouterr().err
    assert "share a run of 6 words" in said
    assert f"the limit is {MAX_SHARED_LINES:.0%}" in said and f"at most {DIFFERENT_BOOKS_SHARE:.1%}" in said
    assert not out.exists()


@pytest.mark.parametrize("arguments, reason", [
    (["--epochs", "4", "--patience", "4"], "--lr-schedule cosine"),
    (["--epochs", "10", "--lr-schedule", "cosine"], "--patience 6 is below"),  # train's default patience: 6
    (["--epochs", "8", "--lr-schedule", "cosine", "--patience", "8", "--max-minutes", "60"], "--max-minutes"),
    (["--epochs", "4", "--lr-schedule", "cosine", "--patience", "4", "--thr", "2"], "--threads"),
    (["--epochs", "4", "--lr-schedule", "cosine", "--patience", "4", "--out", "x"], "--out"),
    (["--lr-schedule", "cosine", "--patience", "100"], "give --epochs"),  # not train's default by accident
])
def test_recipes_that_would_let_the_held_out_book_steer_its_fold_are_refused(arguments, reason):
    with pytest.raises(RecipeError, match=reason.replace("-", r"\-")):
        parse_train_args(arguments)


def test_a_starting_model_that_saw_the_held_out_book_or_does_not_say_is_refused(tmp_path):
    model = tmp_path / "base.keras"
    data = {"real": [{"train": {"gs/book_a/lines": 10}, "val": {"gs/book_b/lines": 5}}]}
    args = parse_train_args(["--epochs", "2", "--lr-schedule", "cosine", "--patience", "2", "--init-from", str(model)])
    with pytest.raises(RecipeError, match="does not say|nothing beside it"):
        check_init_from(args, "book_c")
    sidecar = model.with_suffix(".json")
    sidecar.write_text(json.dumps({"training_data": json.dumps(data)}), encoding="utf-8")
    check_init_from(args, "book_c")
    for seen in ("book_a", "book_b"):  # trained on, or its epochs chosen on
        with pytest.raises(RecipeError, match="trained or validated on"):
            check_init_from(args, seen)
    # A data folder exported without its manifest says nothing of its books, and no record says nothing.
    for said in ({"real": [*data["real"], {"folder": "data/more"}]}, {}):
        sidecar.write_text(json.dumps({"training_data": json.dumps(said)}), encoding="utf-8")
        with pytest.raises(RecipeError, match="nothing beside it says"):
            check_init_from(args, "book_c")


def test_a_starting_models_synthetic_lines_drawn_from_the_held_out_books_text_are_refused(tmp_path, caplog):
    books = tmp_path / "gs"
    for book in ("book_a", "book_c"):
        (books / book).mkdir(parents=True)
        (books / book / "000001.gt.txt").write_text("قال أبو محمد", encoding="utf-8")
    real, arrays, lines = tmp_path / "real", tmp_path / "synth-arrays", tmp_path / "synth"
    for folder, manifest in ((real, {"sources": [str(books / "book_a")], "splits": {"train": {"sources": {"gs/book_a": 1}}}}),
                             (arrays, {"sources": [str(lines)], "splits": {"train": {"sources": {"synth": 9}}}})):
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"args": {"data": [str(real)], "synth": [str(arrays)]}}), encoding="utf-8")
    args = parse_train_args(["--epochs", "2", "--lr-schedule", "cosine", "--patience", "2", "--init-from",
                             str(run / "last.keras")])
    lines.mkdir()
    for exclude, refused in (([], True), (["book_c"], False)):
        (lines / "synth.json").write_text(json.dumps({"corpus": [str(books)], "exclude_corpus": exclude}), encoding="utf-8")
        if refused:
            with pytest.raises(RecipeError, match="synthetic lines .* drawn from gs/book_c/000001.gt.txt"):
                check_init_from(args, "book_c")
        else:
            caplog.clear()
            check_init_from(args, "book_c")
            assert "synthetic" not in caplog.text
    (lines / "synth.json").unlink()  # an exported model never says which corpus: a warning, not a refusal
    with caplog.at_level(logging.WARNING):
        check_init_from(args, "book_c")
    assert "whose corpus is not recorded" in caplog.text


def test_books_are_the_folders_of_lines_and_a_series_needs_two(books, tmp_path, capsys):
    found, lines = leave_one_out.discover_books(books)
    assert list(found) == list(BOOKS) and lines == {"book_amiri": 10, "book_naskh": 8, "book_noto": 8}
    assert leave_one_out.select_books(["naskh", "book_amiri"], list(found)) == ["book_naskh", "book_amiri"]
    for wanted in (["book_"], ["nothing"]):
        with pytest.raises(leave_one_out.UsageError, match="matches"):
            leave_one_out.select_books(wanted, list(found))
    (tmp_path / "empty").mkdir()
    write_line_folder(tmp_path / "one" / "book_x", ["قال أبو محمد"], "Amiri-Regular")
    for folder, reason in (("empty", "no lines"), ("one", "holds one book")):
        with pytest.raises(SystemExit):
            leave_one_out.main([str(tmp_path / folder), "--out", str(tmp_path / "out"), "--", *RECIPE])
        assert reason in capsys.readouterr().err


def test_shared_runs_count_lines_of_a_book_whose_text_is_in_a_corpus():
    book = ["a b c d e f g", "h i j k l m", "n o p"]  # the last line is too short to tell
    assert lines_sharing_runs(book, "x y a b c d e f z".split()) == (1, 2)
    assert lines_sharing_runs(book, "x y a b c d e z h i j k l m".split()) == (1, 2)
    assert lines_sharing_runs(book, "b c d e f g h i j k l m".split()) == (2, 2)
    assert lines_sharing_runs(book, []) == (0, 2)


def test_excluding_a_book_matches_below_the_corpus_folder_not_the_whole_path(tmp_path):
    root = tmp_path / "checkout-of-book_naskh" / "corpus"  # a path that happens to hold the name
    for name in ("book_naskh/000001.gt.txt", "book_amiri/000001.gt.txt", "other.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("قال أبو محمد", encoding="utf-8")
    kept = iter_text_files([str(root)], exclude=["book_naskh"])
    assert [corpus_name(f, root) for f in kept] == ["corpus/book_amiri/000001.gt.txt", "corpus/other.txt"]
    assert iter_text_files([str(root / "book_naskh")], exclude=["book_naskh"]) == []  # the book's own folder
    assert iter_text_files([str(root / "book_naskh" / "000001.gt.txt")], exclude=["book_naskh"]) == []


def recipe_of(books, train_args=RECIPE, corpus=(), synth_lines=40) -> Recipe:
    """The recipe leave_one_out records for these arguments."""
    corpus = [str(Path(c).resolve()) for c in corpus]
    return Recipe(train_args=list(train_args), synth_lines=synth_lines, synth_seed=leave_one_out.DEFAULTS["synth_seed"],
                  corpus=corpus, corpus_sha256=corpus_fingerprint(corpus), books=leave_one_out.discover_books(books)[1])


def finished_fold(out, book, recipe) -> Fold:
    """A fold whose record says every step is done (nothing left to run)."""
    fold = Fold(book, out / book)
    for step in STEPS:
        fold.note(step, 60.0, recipe)
    return fold


def test_force_puts_the_given_recipe_in_place_and_later_runs_go_on_with_it(books, tmp_path, capsys):
    out = tmp_path / "loo"
    finished_fold(out, "book_naskh", recipe_of(books))
    other = [a if a != "3e-3" else "1e-3" for a in RECIPE]
    command = [str(books), "--out", str(out), "--books", "naskh", "--synth-lines", "40", "--corpus"]
    with pytest.raises(SystemExit):
        leave_one_out.main([*command, "--", *other])
    assert "was run with another recipe" in capsys.readouterr().err
    assert leave_one_out.main([*command, "--force", "--", *other]) == 0
    assert leave_one_out.main(["--out", str(out), "--books", "naskh"]) == 0  # the recorded (forced) recipe
    with pytest.raises(SystemExit):  # the fold's first recipe is now the other one
        leave_one_out.main([*command, "--", *RECIPE])
    record = json.loads((out / "book_naskh" / "fold.json").read_text(encoding="utf-8"))
    assert record["recipes"][record["current_recipe"]]["train_args"] == other
    assert [r.train_args for r in Fold("book_naskh", out / "book_naskh").used_recipes()] == [RECIPE]


def test_the_series_is_found_again_from_another_folder(books, tmp_path, monkeypatch):
    out, corpus = tmp_path / "loo", tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "text.txt").write_text(CORPUS_LINES[0], encoding="utf-8")
    finished_fold(out, "book_naskh", recipe_of(books, corpus=[corpus]))
    monkeypatch.chdir(books.parent)
    assert leave_one_out.main([books.name, "--out", str(out), "--books", "naskh", "--synth-lines", "40", "--corpus",
                               os.path.relpath(corpus), "--", *RECIPE]) == 0
    monkeypatch.chdir(tmp_path / "loo")
    assert leave_one_out.main(["--out", str(out), "--books", "naskh"]) == 0


def test_a_corpus_moved_elsewhere_is_still_the_same_recipe(books, tmp_path):
    here, there, changed = (tmp_path / name / "corpus" for name in ("here", "there", "changed"))
    for folder, text in ((here, CORPUS_LINES[0]), (there, CORPUS_LINES[0]), (changed, CORPUS_LINES[1])):
        folder.mkdir(parents=True)
        (folder / "text.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "loo"
    folds = [Fold(book, out / book) for book in ("book_naskh", "book_amiri")]
    for fold, second in zip(folds, (there, changed)):
        fold.note("real", 60.0, recipe_of(books, corpus=[here]))
        fold.note("synth", 60.0, recipe_of(books, corpus=[second]))
        fold.record["held_out"] = {"source": f"books/{fold.book}", "lines": 8, "cer": 0.1, "wer": 0.2,
                                   "trained_books_cer": 0.05}
    assert len(folds[0].record["recipes"]) == 1 and len(folds[1].record["recipes"]) == 2
    assert not summarise(out, folds[:1])["mixed_recipes"]
    assert summarise(out, folds)["mixed_recipes"]  # another text is another recipe


def test_synthetic_lines_other_than_the_recipes_number_are_refused(books, tmp_path):
    fold = Fold("book_naskh", tmp_path / "loo" / "book_naskh")
    write_line_folder(fold.synth_lines, CORPUS_LINES[:3], "Amiri-Regular")
    train, found = parse_train_args(RECIPE), leave_one_out.discover_books(books)[0]
    for lines, emptied, made in ((2, False, 3), (3, True, 2), (3, False, 3)):
        series = Series(books, found, recipe_of(books, synth_lines=lines), train, 1)
        (fold.synth_lines / "000000.gt.txt").write_text("" if emptied else CORPUS_LINES[0], encoding="utf-8")
        fold.note("synth", 60.0, series.recipe)
        if made == lines:
            assert synthetic_arrays(fold, series) == {"lines": 3}
            continue
        with pytest.raises(FoldError, match=f"has {made} synthetic lines, its recipe {lines}"):
            synthetic_arrays(fold, series)
        assert not fold.done("synth")  # rendered again once the folder is deleted


def test_a_book_too_short_to_check_against_the_corpus_is_said_loudly(tmp_path, caplog):
    root = tmp_path / "books"
    for book, offset in (("book_a", 0), ("book_b", 40)):
        write_line_folder(root / book, short_lines(3, offset), "Amiri-Regular")
    series = Series(root, leave_one_out.discover_books(root)[0], recipe_of(root), parse_train_args(RECIPE), 1)
    with caplog.at_level(logging.WARNING):
        assert check_corpus("book_a", series) == [0, 0]
        assert check_corpus("book_a", series) == [0, 0]
    assert caplog.text.count("NOT CHECKED: none of book_a's lines has 6 words") == 1  # once per session
    fold = Fold("book_a", tmp_path / "loo" / "book_a")
    fold.note("synth", 60.0, series.recipe, held_out_lines_sharing_a_run=[0, 0])
    fold.record["held_out"] = {"source": "books/book_a", "lines": 3, "cer": 0.1, "wer": 0.2, "trained_books_cer": 0.05}
    summary = summarise(tmp_path / "loo", [fold])
    assert "WARNING: not checked whether the synthetic lines' corpus held the text of book_a" in format_summary(
        summary, tmp_path / "loo")


def test_loo_finish_checks_the_shipped_corpus_from_any_folder_and_refuses_a_missing_one(tmp_path, monkeypatch,
                                                                                         capsys):
    from training import loo_finish

    monkeypatch.chdir(tmp_path)  # a relative default would find no datasets/corpus here and check nothing
    default = loo_finish.build_parser().parse_args(["out", "lines", "--parity-data", "p"]).corpus
    assert default == [leave_one_out.DEFAULT_CORPUS] and Path(default[0]).is_absolute()
    assert iter_text_files(default, [])  # the shipped text is what the corpus check reads
    assert loo_finish.main(["out", "lines", "--parity-data", "p", "--corpus", "datasets/corpus"]) == 2
    assert "--corpus: no such file or folder: datasets/corpus" in capsys.readouterr().err
