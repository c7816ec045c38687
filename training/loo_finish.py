"""Finish a leave-one-book-out series trained on a GPU machine (``scripts/loo-gpu.sh``), here, with TensorFlow.

    python -m training.loo_finish runs/loo-gpu ../shared/datasets/openiti-gs --parity-data data/real

For each fold folder OUT/BOOK/ whose ``run/last.pt`` (``training.train_torch``) is there:
  1. the last epoch's weights into the Keras model (``training.torch_to_keras``: refused if the two disagree),
  2. export to ONNX (``training.export``, as every other model: parity with Keras checked on real lines),
  3. evaluation on every book of LINES_DIR (``training.evaluate``); the held-out book's row is the fold's figure,
  4. whether the held-out book's text was in the fold's synthetic lines' corpus (runs of words shared with it).
Then the same summary as ``training.leave_one_out``: a table, OUT/summary.json, OUT/loo-cer.png and the
``training.model_card --leave-one-out`` arguments. Steps already done (their output there) are not done again,
unless ``run/last.pt`` is newer than them (the run trained on). A fold whose run has not trained all the epochs it
was started for (still training, or stopped) is left out of the summary and named there.
The folds' recipe is the run's own: ``run/run.json`` holds each fold's arguments, and folds trained with
different ones are flagged, as the CPU driver does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from recognition.line_data import SkipReport, iter_samples, matches_source
from recognition.text import normalize_text

from .corpus import DEFAULT_CORPUS
from .formatting import percent
from .loo_fold import write_json
from .loo_report import format_table, plot
from .loo_steps import MAX_SHARED_LINES, held_out_row
from .text_overlap import RUN_WORDS, lines_sharing_runs

log = logging.getLogger("training.loo_finish")
# Where and how a fold ran, not what it learnt from: its own paths, the machine, and the arithmetic that machine
# does fast (TF32 on a GPU, bf16 autocast on a CPU with AMX; the weights stay fp32 either way). Each fold's is in
# its row ("trained_on"), so a series trained partly on a GPU and partly on a CPU is one recipe, told apart there.
RECIPE_KEYS_PER_FOLD = {"data", "val_source", "synth", "out", "workers", "device", "threads", "precision",
                        "progress_every"}
# train_torch options added after some folds were trained and their records kept: such a fold trained as if with
# these values (the option did not exist), so a record without one is the same recipe as a record with this value.
ARGS_BEFORE_THEY_EXISTED = {"ema": 0.0}


def fold_recipe(args: dict) -> dict:
    """What a fold learnt from, as a run records its arguments (the machine's and its own paths left out)."""
    return {k: v for k, v in {**ARGS_BEFORE_THEY_EXISTED, **args}.items() if k not in RECIPE_KEYS_PER_FOLD}


def book_folders(lines_dir: Path, book: str) -> list[Path]:
    found = [d for d in sorted(lines_dir.iterdir()) if d.is_dir() and matches_source(d.name, [book])]
    if len(found) != 1:
        raise SystemExit(f"{book}: {len(found)} folders of {lines_dir} match it ({[d.name for d in found]}); "
                         "name the book so that one does")
    return found


def corpus_check(book: str, lines_dir: Path, corpus: list[str]) -> list[int]:
    """[held-out lines sharing a run of RUN_WORDS words with the synthetic lines' corpus, lines long enough]."""
    from .corpus import TextCorpus

    sources = [str(d) for d in sorted(lines_dir.iterdir()) if d.is_dir()] + corpus
    words = TextCorpus.from_paths(sources, exclude=[book]).words
    held_out = [normalize_text(s.text) for s in iter_samples([str(d) for d in book_folders(lines_dir, book)],
                                                             SkipReport())]
    shared, long_lines = lines_sharing_runs(held_out, words)
    return [shared, long_lines]


def finish_fold(fold: Path, lines_dir: Path, parity_data: list[str], corpus: list[str], threads: int) -> dict:
    """A trained fold: converted, exported and evaluated (the steps not done yet), then its summary row."""
    from . import evaluate, export, torch_to_keras

    book, run = fold.name, fold / "run"
    keras_path, onnx_path = run / "last.keras", fold / "model" / f"loo-{fold.name}.onnx"
    evaluation = fold / "evaluation" / "evaluation.json"
    if keras_path.exists() and keras_path.stat().st_mtime < (run / "last.pt").stat().st_mtime:
        # The run trained on after these were made (resumed, more epochs): they describe older weights.
        log.info("%s: run/last.pt is newer than its Keras copy: converting, exporting and evaluating again", book)
        for stale in (keras_path, onnx_path, evaluation):
            stale.unlink(missing_ok=True)
    if not keras_path.exists():
        log.info("%s: copying the last epoch's weights into the Keras model", book)
        if torch_to_keras.main([str(run / "last.pt"), "--out", str(keras_path)]):
            raise SystemExit(f"{book}: torch_to_keras refused {run / 'last.pt'}")
    if not onnx_path.exists():
        log.info("%s: exporting to %s", book, onnx_path)
        export.main([str(run), "--out", str(onnx_path), "--checkpoint", "last.keras", "--name", f"loo-{book}",
                     "--version", "loo", "--parity-data", *parity_data])
    if not evaluation.exists():
        log.info("%s: evaluating on every book of %s", book, lines_dir)
        evaluate.main([str(onnx_path), str(lines_dir), "--out", str(evaluation.parent), "--threads", str(threads)])
    return fold_row(book, evaluation, run / "run.json", lines_dir, corpus)


def fold_row(book: str, evaluation: Path, run_record: Path, lines_dir: Path, corpus: list[str]) -> dict:
    """A fold's summary row from its evaluation and its run's record (and the corpus check, done again here)."""
    results = json.loads(evaluation.read_text(encoding="utf-8"))["results"]
    sources = [s for s in results if s != "all" and matches_source(s, [book])]
    if len(sources) != 1:  # the first of several would be another book's figure
        raise SystemExit(f"{book}: {len(sources)} evaluated sources match it ({sources}); name the book so that one does")
    source = sources[0]
    record = json.loads(run_record.read_text(encoding="utf-8"))
    shared, long_lines = corpus_check(book, lines_dir, corpus)
    if long_lines and shared / long_lines > MAX_SHARED_LINES:
        raise SystemExit(f"{book}: {shared} of its {long_lines} long lines share a run of {RUN_WORDS} words with "
                         "the synthetic lines' corpus: its text was in there, the fold does not count")
    recipe = fold_recipe(record.get("args", {}))
    return {"book": book, **held_out_row(results, source), "epochs": len(record.get("val_cer", [])),
            "training_minutes": record.get("minutes"), "machine": record.get("machine"),
            "trained_on": trained_on(record), "evaluation": str(evaluation), "corpus_check": [shared, long_lines],
            "recipe": recipe}


def trained_on(record: dict) -> str:
    """'NVIDIA H100 80GB HBM3, TF32' / 'Intel(R) Xeon(R) Processor, 1 thread of 2 cores, bf16': a run's machine
    and arithmetic, as its last invocation recorded them (a run resumed elsewhere is described by where it ended)."""
    machine, args = record.get("machine") or {}, record.get("args", {})
    precision = args.get("precision", "fp32")  # runs from before --precision trained in fp32
    if machine.get("gpu"):
        return f"{machine['gpu']}, {'TF32' if precision == 'fp32' else precision}"  # train_torch allows TF32
    threads = args.get("threads") or 0
    cores = f"{machine.get('cpu_cores', '?')} cores"
    used = f"{threads} thread{'s' if threads > 1 else ''} of {cores}" if threads else cores
    return f"{machine.get('cpu', '?')}, {used}, {precision}"


def recorded_fold(folder: Path, lines_dir: Path, corpus: list[str]) -> dict:
    """A fold finished in an earlier session, counted as it was measured: its model is gone (the GPU machine's
    runs are not kept), its records stay (``bench/results/loo-gpu/BOOK/``: run.json, evaluation.json)."""
    missing = [name for name in ("run.json", "evaluation.json") if not (folder / name).exists()]
    if missing:
        raise SystemExit(f"--recorded {folder}: no {' or '.join(missing)} there")
    done, planned = trained_epochs(folder / "run.json")
    if planned is None or done < planned:
        raise SystemExit(f"--recorded {folder}: its run trained {done} of {planned} epochs, not a finished fold")
    log.info("%s: counted as recorded in %s (not converted, exported or evaluated again)", folder.name, folder)
    return fold_row(folder.name, folder / "evaluation.json", folder / "run.json", lines_dir, corpus)


def trained_epochs(path: Path) -> tuple[int, int | None]:
    """(epochs a fold's run has trained, epochs it was started for) from its run.json."""
    if not path.exists():
        return 0, None
    record = json.loads(path.read_text(encoding="utf-8"))
    return len(record.get("val_cer", [])), record.get("args", {}).get("epochs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.loo_finish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the series folder of scripts/loo-gpu.sh (OUT/BOOK/run/last.pt)")
    parser.add_argument("lines_dir", type=Path, help="the books' lines (NAME.png + NAME.gt.txt, a folder per book)")
    parser.add_argument("--parity-data", nargs="+", required=True, help="preprocessed lines for export's parity check")
    parser.add_argument("--corpus", nargs="*", default=[DEFAULT_CORPUS],
                        help="extra text the synthetic lines were drawn from (as given to loo-gpu.sh; default: the "
                             "repository's datasets/corpus, wherever this is run from)")
    parser.add_argument("--books", nargs="*", help="only these folds (default: every OUT/BOOK with run/last.pt)")
    parser.add_argument("--planned", nargs="*", default=[], metavar="BOOK",
                        help="every book of the series: those with no trained run yet are listed as not trained, and "
                             "the summary counts the series' folds, not only the ones found")
    parser.add_argument("--recorded", nargs="*", type=Path, default=[], metavar="DIR",
                        help="folds finished earlier whose models are gone and whose records were kept, a folder per "
                             "book named as its fold (run.json, evaluation.json; e.g. bench/results/loo-gpu/IbnAthir): "
                             "counted as measured then, with the corpus check done again")
    parser.add_argument("--threads", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The corpus check reads what it finds: a mistyped path would silently leave that text out of it.
    missing = [c for c in args.corpus if not Path(c).exists()]
    if missing:
        print(f"--corpus: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    folds = [d for d in sorted(args.out.iterdir()) if (d / "run" / "last.pt").exists()
             and (not args.books or d.name in args.books)] if args.out.is_dir() else []
    both = sorted({d.name for d in folds} & {r.name for r in args.recorded})
    if both:  # which of the two would be the figure?
        print(f"trained under {args.out} and given as --recorded: {', '.join(both)}", file=sys.stderr)
        return 2
    if not folds and not args.recorded:
        print(f"no fold with run/last.pt under {args.out}", file=sys.stderr)
        return 2
    # A fold still training (or stopped early) has a last.pt too: its figure is not the recipe's.
    unfinished = {}
    for fold in folds:
        done, planned = trained_epochs(fold / "run" / "run.json")
        if planned is None or done < planned:
            unfinished[fold.name] = f"{done} of {planned} epochs"
            log.warning("%s: its run has trained %d of %s epochs: left out until it has finished", fold.name, done,
                        planned)
    finished = [f for f in folds if f.name not in unfinished]
    if not finished and not args.recorded:
        print(f"no fold under {args.out} has finished its training", file=sys.stderr)
        return 2
    rows = [finish_fold(f, args.lines_dir, args.parity_data, args.corpus, args.threads) for f in finished]
    rows += [recorded_fold(r, args.lines_dir, args.corpus) for r in args.recorded]
    rows.sort(key=lambda r: r["book"])
    recipes = {json.dumps(r["recipe"], sort_keys=True) for r in rows}
    known = {f.name for f in folds} | {r.name for r in args.recorded}
    not_trained = [b for b in args.planned if b not in known]
    series = len(known) + len(not_trained)
    summary = {"folds_finished": len(rows), "folds": series, "unfinished": unfinished, "not_trained": not_trained,
               "mean_cer": round(sum(r["cer"] for r in rows) / len(rows), 5), "mixed_recipes": len(recipes) > 1,
               "model_card_arguments": ["--leave-one-out", *(f"{r['book']}={r['evaluation']}" for r in rows)],
               "per_fold": rows}
    write_json(args.out / "summary.json", summary)
    plot(rows, summary["mean_cer"], series, args.out / "loo-cer.png")
    table = format_table(["held-out book", "lines", "CER", "WER", "CER on its training books", "epochs",
                          "training minutes", "trained on"],
                         [[r["book"], str(r["lines"]), percent(r["cer"]), percent(r["wer"]),
                           percent(r["trained_books_cer"]), str(r["epochs"]), f"{r['training_minutes'] or 0:.0f}",
                           r["trained_on"]] for r in rows])
    print(table)
    print(f"\nmean held-out CER {percent(summary['mean_cer'])} over {len(rows)} of {series} folds"
          + ("\nWARNING: the folds were not all trained with the same arguments" if summary["mixed_recipes"] else "")
          + (f"\nWARNING: {len(unfinished)} folds left out, not finished training: {unfinished}" if unfinished else "")
          + (f"\nnot trained yet: {', '.join(not_trained)}" if not_trained else ""))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'loo-cer.png'}\nfor the model card: "
          + " ".join(summary["model_card_arguments"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
