"""Leave-one-book-out: train one model per book without it, and measure each on the book it never saw.

    python -m training.leave_one_out ../shared/datasets/openiti-gs --out runs/loo --threads 2 \\
        --minutes-per-session 55 -- --epochs 20 --lr 1e-3 --lr-schedule cosine --patience 20

For each book (a folder of lines under LINES_DIR; --books picks some), in OUT/BOOK/:
  1. real          the real lines preprocessed, that book held out whole as val (training.preprocess)
  2. synth         its own synthetic lines, drawn from the other books' text (and --corpus), never from
                   the held-out book's: a corpus sharing its text is refused (training.synth)
  3. synth-arrays  those lines preprocessed
  4. train         a training run with the arguments after --, the same for every fold (training.train)
  5. export        the LAST epoch's model to ONNX (training.export --checkpoint last.keras)
  6. evaluate      that model on every book (training.evaluate); the held-out book's row is the figure

The recipe must be fixed before the run, or the held-out book would steer its own fold: --epochs,
--lr-schedule cosine and --patience of at least the epochs are required, --max-minutes is refused,
and an --init-from model that saw the held-out book (or does not say) is refused.

The series is recorded in OUT/loo.json (LINES_DIR and the corpus as absolute paths, so that the
command may be run again from any folder).

Run the same command again and it goes on where it stopped: finished steps are skipped and an
unfinished training run continues from its checkpoint. Without arguments after -- (and without
LINES_DIR or the synthetic-line options) it uses the recorded ones. A fold started with other
arguments than the ones given is refused unless --force. --minutes-per-session M ends the session
cleanly: a step starts only while time is left, training stops at the epoch boundary that fits
(an epoch is never cut, so the sessions do not change the run), and every session does at least one
step or epoch. --minutes-per-session 0 does exactly one. Data steps are not cut, and the length of a
fresh run's first epoch is not known before it ends: a session may run over by one of them.

--status prints each fold's progress (steps, epochs, minutes, held-out CER, machines) and changes
nothing. After each session, and with --summary, the finished folds are summarised: a table,
OUT/summary.json, OUT/loo-cer.png and the training.model_card --leave-one-out arguments.

Exit status: 0 when every selected fold is finished, 3 when the session ended with work left
(run again), 2 on a refusal (bad arguments, a recipe mismatch, a leak of the held-out book).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from recognition.line_data import SkipReport, iter_samples

from .corpus import DEFAULT_CORPUS
from .loo_fold import Fold, steps_for, write_json
from .loo_recipe import Recipe, RecipeError, check_init_from, corpus_fingerprint, parse_train_args
from .loo_report import format_summary, status_table, summarise
from .loo_steps import DATA_STEPS, FoldError, Series, check_corpus, describe, training

log = logging.getLogger("training.leave_one_out")

SERIES_RECORD = "loo.json"
DEFAULTS = {"synth_lines": 45000, "synth_seed": 2026, "corpus": [DEFAULT_CORPUS]}
UNFINISHED = 3


class UsageError(Exception):
    pass


@dataclass
class Session:
    """The time this invocation may take: at least one step or epoch, further ones while they fit."""
    minutes: float | None
    started: float = field(default_factory=time.monotonic)
    units: int = 0

    def minutes_left(self) -> float | None:
        if self.minutes is None:
            return None
        return max(0.0, self.minutes - (time.monotonic() - self.started) / 60)

    def may_start(self, expected_seconds: float = 0.0) -> bool:
        if self.minutes is None or self.units == 0:
            return True
        return time.monotonic() - self.started + expected_seconds < self.minutes * 60


def discover_books(lines_dir: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each folder under LINES_DIR holding lines is a book: (book -> its line source, exactly one;
    book -> its number of lines)."""
    if not lines_dir.is_dir():
        raise UsageError(f"{lines_dir} is not a folder of books")
    sources: dict[str, set[str]] = {}
    lines: Counter = Counter()
    for sample in iter_samples([str(lines_dir)], SkipReport()):
        parts = sample.source.split("/")
        if len(parts) < 2:
            raise UsageError(f"lines directly in {lines_dir} ({sample.image_path.name}): put each book's lines in a "
                             "folder of its own under it")
        sources.setdefault(parts[1], set()).add(sample.source)
        lines[parts[1]] += 1
    if not sources:
        raise UsageError(f"no lines (NAME.png + NAME.gt.txt) in any folder under {lines_dir}")
    if len(sources) < 2:
        raise UsageError(f"{lines_dir} holds one book ({', '.join(sources)}): leaving it out leaves nothing to train on")
    for book, found in sources.items():
        if len(found) > 1:
            raise UsageError(f"book {book} has lines in {len(found)} folders ({', '.join(sorted(found))}): one folder "
                             "of lines per book, so that its row in an evaluation is the book's")
        clashes = [s for other, f in sources.items() if other != book for s in f if book in s]
        if clashes:
            raise UsageError(f"book name {book} is part of another book's path ({clashes[0]}): books are picked by "
                             "name (--val-source, the model card's --leave-one-out), so rename one")
    return {book: sorted(found) for book, found in sorted(sources.items())}, dict(sorted(lines.items()))


def select_books(wanted: list[str] | None, books: list[str]) -> list[str]:
    """The books named (exactly, or by a part of the name that only one book has), in the order given."""
    if not wanted:
        return books
    chosen = []
    for name in wanted:
        matches = [name] if name in books else [b for b in books if name in b]
        if len(matches) != 1:
            raise UsageError(f"--books {name}: {'no' if not matches else 'more than one'} book matches "
                             f"({', '.join(matches or books)})")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def run_fold(fold: Fold, number: int, series: Series, session: Session) -> bool:
    """Do what is left of the fold, as far as the session allows; True once it is finished."""
    steps = steps_for(series.recipe)
    for index, step in enumerate(steps, 1):
        label = f"fold {number}/{len(series.books)} ({fold.book}), step {index}/{len(steps)} {step}"
        if fold.done(step):
            log.info("%s: done already", label)
            continue
        expected = fold.last_epoch_seconds() if step == "train" else 0.0
        if not session.may_start(expected):
            log.info("%s: not started, the session's %g minutes are used%s", label, session.minutes,
                     f" (an epoch takes ~{expected / 60:.0f} min)" if expected else "")
            return False
        log.info("%s: %s", label, describe(step, fold, series))
        began = time.monotonic()
        if step == "train":
            facts = training(fold, series, session.minutes_left())
            finished = facts.pop("finished")
        else:
            facts, finished = DATA_STEPS[step](fold, series), True
        session.units += 1
        fold.note(step, time.monotonic() - began, series.recipe, done=finished, **facts)
        if not finished:
            log.info("%s: stopped for the session after epoch %d of %d; run the same command again to go on",
                     label, fold.epochs_done(), series.train.epochs)
            return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.leave_one_out", description=__doc__,
        usage="%(prog)s [LINES_DIR] --out OUT [options] [-- TRAIN ARGUMENTS]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lines_dir", nargs="?", type=Path,
                        help="a folder with one folder of lines (NAME.png + NAME.gt.txt) per book (default: recorded)")
    parser.add_argument("--out", type=Path, required=True, help="the series' folder: one folder per fold, the summary")
    parser.add_argument("--books", nargs="+", help="the folds to work on now, by book (default: all, in name order)")
    parser.add_argument("--synth-lines", type=int,
                        help=f"synthetic lines per fold, 0 for none (default: recorded, else {DEFAULTS['synth_lines']})")
    parser.add_argument("--synth-seed", type=int, help=f"(default: recorded, else {DEFAULTS['synth_seed']})")
    parser.add_argument("--corpus", nargs="*",
                        help="more text for the synthetic lines beside the other books' transcriptions "
                             "(default: recorded, else the shipped datasets/corpus); none: --corpus alone")
    parser.add_argument("--minutes-per-session", type=float,
                        help="end cleanly after about this long (see above); run again to continue")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow threads, preprocessing and rendering workers, onnxruntime threads "
                             "(default 0: all cores); not part of the recipe")
    parser.add_argument("--force", action="store_true",
                        help="go on although folds were started with another recipe: their steps still to do use "
                             "the one given, and later runs take it as the recorded one; finished steps stay as "
                             "they are (synthetic lines already rendered are not rendered again), and a training "
                             "run already started goes on from its checkpoint with its own model, alphabet, "
                             "EMA and early-stopping state (the other train arguments, e.g. --lr or --epochs, "
                             "apply from its next epoch); the summary says the recipes were mixed")
    parser.add_argument("--status", action="store_true", help="print each fold's progress and exit")
    parser.add_argument("--summary", action="store_true", help="summarise the finished folds and exit")
    return parser


def resolve_recipe(args: argparse.Namespace, train_args: list[str], recorded: dict | None,
                   books: dict[str, int]) -> Recipe:
    """The options given, else the recorded ones, else the defaults."""
    before = (recorded or {}).get("recipe", {})

    def pick(name: str, given):
        return given if given is not None else before.get(name, DEFAULTS.get(name))

    train_args = train_args or before.get("train_args")
    if not train_args:
        raise UsageError("give the training arguments after --, e.g. -- --epochs 20 --lr 1e-3 --lr-schedule cosine "
                         "--patience 20 (python -m training.train --help)")
    corpus = [str(Path(c).resolve()) for c in pick("corpus", args.corpus)]
    missing = [c for c in corpus if not Path(c).exists()]
    if missing:
        raise UsageError(f"--corpus: no such file or folder: {', '.join(missing)}")
    return Recipe(train_args=list(train_args), synth_lines=pick("synth_lines", args.synth_lines),
                  synth_seed=pick("synth_seed", args.synth_seed), corpus=corpus,
                  corpus_sha256=corpus_fingerprint(corpus), books=books)


def check_same_recipe(recipe: Recipe, folds: list[Fold], force: bool) -> list[Fold]:
    """The started folds whose current recipe is another one (refused without ``force``)."""
    other = []
    for fold in folds:
        current = fold.current_recipe()
        differences = recipe.differences(current) if current else []
        if differences and not force:
            raise UsageError(
                f"the fold holding out {fold.book} was run with another recipe:\n  " + "\n  ".join(differences)
                + "\nA mean over folds trained differently is no one recipe's figure. Give the recorded "
                  "arguments (or none after --: the recorded ones are used), or --force to go on with these "
                  "(the summary will say that the recipes were mixed).")
        if differences:
            log.warning("--force: the fold holding out %s was run with another recipe (%s); its steps still to do "
                        "use the one given", fold.book, "; ".join(differences))
            other.append(fold)
    return other


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser()
    args = parser.parse_args(argv[:split])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args, argv[split + 1:])
    except (UsageError, RecipeError, FoldError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


def run(args: argparse.Namespace, train_args: list[str]) -> int:
    record_path = args.out / SERIES_RECORD
    recorded = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else None
    if args.status or args.summary:
        if not recorded:
            raise UsageError(f"{args.out} holds no leave-one-out series ({SERIES_RECORD} missing)")
        recipe = Recipe.from_dict(recorded["recipe"])
        folds = [Fold(book, args.out / book) for book in recipe.books]
        print(status_table(folds, recipe))
        if args.summary:
            summary = summarise(args.out, folds)
            print("\n" + format_summary(summary, args.out) if summary else "no fold is finished yet")
        return 0

    args.lines_dir = args.lines_dir or (Path(recorded["lines_dir"]) if recorded else None)
    if args.lines_dir is None:
        raise UsageError("give LINES_DIR, the folder of books")
    args.lines_dir = args.lines_dir.resolve()
    books, line_counts = discover_books(args.lines_dir)
    selected = select_books(args.books, list(books))
    recipe = resolve_recipe(args, train_args, recorded, line_counts)
    train = parse_train_args(recipe.train_args)
    folds = {book: Fold(book, args.out / book) for book in books}
    replaced = check_same_recipe(recipe, list(folds.values()), args.force)
    series = Series(args.lines_dir, books, recipe, train, args.threads)
    for book in selected:  # refused now, not after hours of other folds; once per session
        check_init_from(train, book)
        if recipe.synth_lines and not folds[book].done("synth"):
            check_corpus(book, series)
    for fold in replaced:  # the series goes on with this recipe: later plain runs compare with it
        fold.replace_recipe(recipe)
    write_json(record_path, {"lines_dir": str(args.lines_dir), "recipe": recipe.to_dict()})
    log.info("%d books; folds to work on: %s; recipe: %d synthetic lines (seed %d), train %s", len(books),
             ", ".join(selected), recipe.synth_lines, recipe.synth_seed, " ".join(recipe.train_args))

    session = Session(args.minutes_per_session)
    finished = True
    for book in selected:
        if not run_fold(folds[book], list(books).index(book) + 1, series, session):
            finished = False
            break
    print(status_table(list(folds.values()), recipe))
    summary = summarise(args.out, list(folds.values()))
    if summary:
        print("\n" + format_summary(summary, args.out))
    if not finished:
        print("the session ended with work left: run the same command again to go on")
        return UNFINISHED
    return 0


if __name__ == "__main__":
    sys.exit(main())
