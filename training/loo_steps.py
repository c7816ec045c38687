"""The steps of one leave-one-book-out fold, each a run of the existing training command that does it.

Each step returns the facts worth recording in the fold's ``fold.json``, and checks what it made where
a mistake would quietly spoil the figure: the held-out book must be the whole ``val`` split and absent
from ``train``, and its text must not be in the corpus the synthetic lines are drawn from.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from recognition.line_data import SkipReport, iter_samples
from recognition.text import normalize_text

from .loo_fold import Fold
from .loo_recipe import Recipe, model_height
from .text_overlap import DIFFERENT_BOOKS_SHARE, RUN_WORDS, lines_sharing_runs

log = logging.getLogger("training.leave_one_out")

# Share of the held-out book's lines (of RUN_WORDS words or more) allowed to share a run of RUN_WORDS
# words with the synthetic lines' corpus. Different books share at most DIFFERENT_BOOKS_SHARE (0.7%,
# text_overlap); a corpus holding the book's own text shares with nearly all of them.
MAX_SHARED_LINES = 0.05


class FoldError(RuntimeError):
    """A fold whose data would not measure what it claims."""


@dataclass
class Series:
    """What every step of every fold needs."""
    lines_dir: Path
    books: dict[str, list[str]]   # book -> its line source (one folder of lines)
    recipe: Recipe
    train: argparse.Namespace     # the recipe's training arguments as training.train reads them
    threads: int                  # 0: as many as the machine has
    corpus_checks: dict[str, list[int]] = field(default_factory=dict)  # book -> check_corpus's answer

    @property
    def workers(self) -> str:
        return str(self.threads or os.cpu_count() or 1)

    def others(self, book: str) -> list[str]:
        return [b for b in self.books if b != book]


def real_data(fold: Fold, series: Series) -> dict:
    from . import preprocess
    from .shards import read_manifest

    preprocess.main([str(series.lines_dir), "--out", str(fold.real), "--val-source", fold.book,
                     "--height", str(model_height(series.train)), "--workers", series.workers])
    splits = read_manifest(fold.real)["splits"]
    train = splits.get("train", {}).get("sources", {})
    val = splits.get("val", {}).get("sources", {})
    check_split(fold.book, series.books[fold.book], train, val)
    return {"train_sources": train, "val_sources": val}


def check_split(book: str, held_out: list[str], train: dict, val: dict) -> None:
    if set(val) != set(held_out) or set(train) & set(held_out) or not train:
        raise FoldError(f"the real data of the fold holding out {book} is not split by that book: val {sorted(val)}, "
                        f"train {sorted(train)}")


def synth_corpus(book: str, series: Series) -> list[str]:
    """The text the fold's synthetic lines are drawn from: the other books' transcriptions and --corpus."""
    return [str(series.lines_dir / other) for other in series.others(book)] + series.recipe.corpus


def check_corpus(book: str, series: Series) -> list[int]:
    """[held-out lines sharing a run of words with the fold's corpus, lines long enough to tell]; refused
    when the share says the held-out book's text is in the corpus. Done once per session and book."""
    if book in series.corpus_checks:
        return series.corpus_checks[book]
    from .corpus import TextCorpus

    corpus = synth_corpus(book, series)
    words = TextCorpus.from_paths(corpus, exclude=[book]).words
    held_out = [normalize_text(s.text) for s in iter_samples([str(series.lines_dir / book)], SkipReport())]
    shared, long_lines = lines_sharing_runs(held_out, words)
    if long_lines and shared / long_lines > MAX_SHARED_LINES:
        raise FoldError(f"{shared} of {book}'s {long_lines} lines of {RUN_WORDS}+ words share a run of {RUN_WORDS} "
                        f"words with the synthetic lines' corpus ({', '.join(corpus)}): its text is in there "
                        f"(the limit is {MAX_SHARED_LINES:.0%}; different books were measured to share at most "
                        f"{DIFFERENT_BOOKS_SHARE:.1%}); take it out of --corpus")
    if not long_lines:
        log.warning("NOT CHECKED: none of %s's lines has %d words, so whether its text is in the synthetic lines' "
                    "corpus (%s) cannot be told; make sure it is not, or the fold's figure is optimistic",
                    book, RUN_WORDS, ", ".join(corpus))
    series.corpus_checks[book] = [shared, long_lines]
    return series.corpus_checks[book]


def synthetic_lines(fold: Fold, series: Series) -> dict:
    from . import synth

    sharing = check_corpus(fold.book, series)
    corpus = synth_corpus(fold.book, series)
    synth.main(["--lines", str(series.recipe.synth_lines), "--out", str(fold.synth_lines), "--corpus", *corpus,
                "--exclude-corpus", fold.book, "--seed", str(series.recipe.synth_seed), "--workers", series.workers])
    return {"corpus": corpus, "held_out_lines_sharing_a_run": sharing}


def synthetic_arrays(fold: Fold, series: Series) -> dict:
    from . import preprocess
    from .shards import read_manifest

    preprocess.main([str(fold.synth_lines), "--out", str(fold.synth_arrays),
                     "--height", str(model_height(series.train)), "--workers", series.workers])
    lines = sum(split["lines"] for split in read_manifest(fold.synth_arrays)["splits"].values())
    if lines != series.recipe.synth_lines:
        fold.undo("synth")
        raise FoldError(f"the fold holding out {fold.book} has {lines} synthetic lines, its recipe {series.recipe.synth_lines}"
                        f" (lines left from an earlier run, or lines skipped: see the report above): delete "
                        f"{fold.synth_lines} and run again, the synth step renders them anew")
    return {"lines": lines}


def training(fold: Fold, series: Series, minutes_left: float | None) -> dict:
    """Train (or go on training) the fold's run; with ``minutes_left``, end at the epoch boundary that
    session allows. The facts say whether the run is finished."""
    from . import train

    before = fold.epochs_done()
    argv = ["--data", str(fold.real), "--out", str(fold.run)]
    if series.recipe.synth_lines:
        argv += ["--synth", str(fold.synth_arrays)]
    if series.threads:
        argv += ["--threads", str(series.threads)]
    if minutes_left is not None:
        argv += ["--session-minutes", f"{minutes_left:.3f}"]
    train.main(argv + series.recipe.train_args)
    state = fold.training_state()
    return {"epochs": [before, state["epoch"]], "finished": training_finished(state, series.train)}


def training_finished(state: dict | None, args: argparse.Namespace) -> bool:
    if not state:
        return False
    return state["epoch"] >= args.epochs or bool(args.max_steps and state["step"] >= args.max_steps)


def export_model(fold: Fold, series: Series) -> dict:
    from . import export

    export.main([str(fold.run), "--out", str(fold.model), "--checkpoint", "last.keras", "--name",
                 f"loo-{fold.book}", "--version", "loo", "--parity-data", str(fold.real)])
    state = fold.training_state()
    return {"epoch": state["epoch"], "last_epoch_val_cer": state["history"][-1]["val_cer"]}


def evaluation(fold: Fold, series: Series) -> dict:
    import json

    from . import evaluate

    evaluate.main([str(fold.model), str(series.lines_dir), "--out", str(fold.evaluation.parent),
                   "--threads", str(series.threads)])
    results = json.loads(fold.evaluation.read_text(encoding="utf-8"))["results"]
    fold.record["held_out"] = held_out_row(results, series.books[fold.book][0])
    return {"cer": fold.record["held_out"]["cer"]}


def held_out_row(results: dict, source: str) -> dict:
    """The held-out book's row, and the CER on the books the model trained on (per character) beside it."""
    row = results[source]
    seen = [r for s, r in results.items() if s not in (source, "all")]
    chars = sum(r["chars"] for r in seen)
    return {"source": source, "lines": row["lines"], "cer": row["cer"], "wer": row["wer"],
            "trained_books_cer": round(sum(r["cer"] * r["chars"] for r in seen) / chars, 5) if chars else None}


DATA_STEPS = {"real": real_data, "synth": synthetic_lines, "synth-arrays": synthetic_arrays,
              "export": export_model, "evaluate": evaluation}


def describe(step: str, fold: Fold, series: Series) -> str:
    """What the step is about to do, for the progress log."""
    others = len(series.others(fold.book))
    return {
        "real": f"preprocessing the real lines: {fold.book} held out whole as val, the other {others} books as train",
        "synth": f"rendering {series.recipe.synth_lines} synthetic lines (seed {series.recipe.synth_seed}) from the "
                 f"text of the other {others} books" + (f" and {', '.join(series.recipe.corpus)}"
                                                          if series.recipe.corpus else "")
                 + f"; {fold.book}'s text left out",
        "synth-arrays": "preprocessing the synthetic lines",
        "train": f"training, epoch {fold.epochs_done() + 1} of {series.train.epochs} next",
        "export": "exporting the last epoch's model (last.keras) to ONNX",
        "evaluate": f"evaluating on every book; {fold.book}'s row is the fold's figure",
    }[step]
