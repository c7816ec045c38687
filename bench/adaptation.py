"""What adapting to a book buys: CER on the rest of a held-out book after N corrected lines, and its cost.

    python -m bench.adaptation ../shared/datasets/openiti-gs/book_IbnQutayba.Adab --corrected 0,50,100,200,400 \\
        --json bench/results/adaptation.json

For each N, the first N lines of the book (file order) play the reviewer's corrections and the product's
own adaptation runs on them (``training.adapt``: every 5th corrected line held out for the gate, as the
service does, the rest trained on with a replay of rendered general lines). The adapted model is then
scored on the book's lines after the largest N (the same lines for every N), whether the gate accepted
it or not; N = 0 is the base model. Prints a table, writes the JSON and a plot of the curve beside it.

``--choose lowest-confidence --evaluate-after M`` corrects instead the N lines among the first M that the
base model is least sure of, the order the review workspace lists them in (``bench.adaptation_selection``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import adaptation_selection as selection
from recognition.line_data import SkipReport, iter_samples

DEFAULT_BASE = os.environ.get("OCR_DEFAULT_MODEL", "models/arabic-crnn-v2-int8.onnx")
HELDOUT_EVERY = 5   # the service's default (OCR_ADAPT_HELDOUT_EVERY)
DEFAULT_LM = Path(__file__).resolve().parent.parent / "models" / "arabic-char-lm.npz"


def link(samples, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, sample in enumerate(samples):
        image = Path(sample.image_path).resolve()
        (folder / f"{n:06d}{image.suffix}").symlink_to(image)
        (folder / f"{n:06d}.gt.txt").write_text(sample.text + "\n", encoding="utf-8")


def split_corrected(first: list) -> tuple[list, list]:
    """The corrected lines trained on, and the gate's held-out slice (every 5th), as the service splits them."""
    heldout = [s for i, s in enumerate(first) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [s for i, s in enumerate(first) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return train, heldout


def adaptation_inputs(train: list, gate: list, args) -> dict:
    """What an N's adaptation depends on; ``--reuse-kept`` reuses a kept result made from the same only."""
    def lines(samples):
        return [[str(Path(s.image_path).resolve()), s.text] for s in samples]

    return {"base": str(Path(args.base).resolve()), "adapt_args": args.adapt_args, "choose": args.choose,
            "train": lines(train), "heldout": lines(gate)}


def kept_inputs(point: Path) -> dict | None:
    try:
        return json.loads((point / "inputs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_point(corrected: int, chosen: list, samples: list, evaluation: Path, work: Path, args) -> dict:
    """One N: adapt on the ``chosen`` corrected lines (file order), score on ``evaluation``."""
    from training import adapt

    train, heldout = split_corrected(chosen)
    # N = 0 adapts nothing: training.adapt only reads the base model on a gate slice it needs; N 1-4 are refused.
    gate = heldout if corrected else samples[:20]
    point = work / f"n{corrected}"
    kept, inputs = point / "out" / "result.json", adaptation_inputs(train, gate, args)
    if args.reuse_kept and kept.exists() and kept_inputs(point) == inputs:
        result = json.loads(kept.read_text(encoding="utf-8"))   # this N's adaptation, from an earlier --keep run
    else:
        if args.reuse_kept and point.exists():
            # Not this adaptation's (another base, book, --choose or --adapt-args), or an interrupted one: redo it, from a
            # clean folder (the old train/heldout links would stay among the new ones, or fail to link).
            print(f"N={corrected}: the kept {point} is not this adaptation's: adapting again", flush=True)
            shutil.rmtree(point)
        link(train, point / "train")
        link(gate, point / "heldout")
        argv = ["--base", args.base, "--heldout", str(point / "heldout"), "--out", str(point / "out"),
                "--name", f"bench-n{corrected}", "--cache", str(work / "cache"), *args.adapt_args.split()]
        if train:
            argv += ["--train", str(point / "train")]
        if Path(args.base).stem.endswith("-int8"):
            argv.append("--int8")
        result = adapt.adapt(adapt.build_parser().parse_args(argv))
        tmp = point / "inputs.json.tmp"   # written after result.json: its presence says the adaptation finished
        tmp.write_text(json.dumps(inputs, ensure_ascii=False), encoding="utf-8")
        tmp.replace(point / "inputs.json")
    model = result["model"] or args.base
    cer, _ = adapt.model_cer(Path(model), [str(evaluation)])
    return {"corrected": corrected, "model": model, "trained_on": len(train), "gate_lines": len(heldout) if train else 0,
            "book_cer": cer, "accepted": result["accepted"], "gate": result["reason"],
            "reference_cer": result.get("reference_cer"), "global_reference_cer": result["global_reference_cer"],
            "epochs": result.get("epochs", 0), "steps": result.get("steps", 0), "plan": result.get("plan"),
            "best_epoch": result.get("best_epoch"), "calibration": result.get("calibration"),
            "conventions": (result.get("conventions") or {}).get("rules", []),
            "minutes": result["minutes"], "cpu_minutes": result["cpu_minutes"]}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["points"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["corrected"] for r in rows], [100 * r["book_cer"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{r['minutes']:.1f} min", (r["corrected"], 100 * r["book_cer"]), textcoords="offset points",
                    xytext=(4, 6), fontsize=8)
    ax.set_xlabel("corrected lines of the book")
    ax.set_ylabel(f"CER % on the book's other {report['evaluation_lines']} lines")
    ax.set_title(f"Adapting {Path(report['base']).name} to {Path(report['book']).name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("book", help="a line folder of one book the base model never trained on")
    parser.add_argument("--corrected", default="0,50,100,200,400", help="comma-separated N")
    parser.add_argument("--base", default=DEFAULT_BASE, help="the model to adapt (ONNX, Keras twin beside it)")
    parser.add_argument("--json", required=True, help="where to write the results (the plot goes beside it)")
    parser.add_argument("--evaluate-after", type=int, default=0,
                        help="score the lines after this one (default: the largest N), so that a run of some N "
                             "is scored on the same lines as the whole curve")
    parser.add_argument("--max-eval-lines", type=int, default=0, help="score at most this many lines (0: all)")
    parser.add_argument("--choose", choices=selection.CHOICES, default="first",
                        help="the N corrected lines: the book's first N (default), or the N lowest-confidence "
                             "lines (the base model's, as the review queue orders them) among the first "
                             "--evaluate-after lines")
    parser.add_argument("--adapt-args", default="", help="extra training.adapt options, e.g. '--epochs 8'")
    parser.add_argument("--keep", help="work in this folder and keep it: each N's adapted model and result.json "
                                       "(DIR/nN/out), the rendered replay lines (DIR/cache, reused by a later run)")
    parser.add_argument("--reuse-kept", action="store_true",
                        help="with --keep: an N whose DIR/nN/out/result.json exists is not adapted again")
    decoding = parser.add_argument_group("decoding chosen per book (bench.adaptation_decoding)")
    decoding.add_argument("--tune-decoding", action="store_true",
                          help="after each N, choose greedy or beam + LM (weight, bonus) on the corrected lines "
                               "the model did not train on; score the rest with greedy and with the choice")
    decoding.add_argument("--lm", default=str(DEFAULT_LM), help="the character LM (default %(default)s)")
    decoding.add_argument("--book-lm-corpus", nargs="*", default=[],
                          help="also a book LM: training.char_lm on this general text plus the text of the lines "
                               "the model trained on")
    decoding.add_argument("--book-lm-exclude", nargs="*", default=None,
                          help="corpus files left out of the book LM (default: the book folder's name)")
    decoding.add_argument("--base-tune-lines", type=int, default=200,
                          help="N = 0: choose on the book's first so many lines (default %(default)s)")
    args = parser.parse_args(argv)
    check_options(parser, args)

    counts = sorted({int(n) for n in args.corrected.split(",") if n.strip()})
    samples = list(iter_samples([args.book], SkipReport()))
    first_scored = max(counts[-1], args.evaluate_after)
    rest = samples[first_scored:]
    if args.max_eval_lines:
        rest = rest[: args.max_eval_lines]
    if not rest:
        parser.error(f"{args.book} has {len(samples)} lines: none left to score after {first_scored}")
    if args.tune_decoding and 0 in counts and args.base_tune_lines > first_scored:
        parser.error(f"--base-tune-lines {args.base_tune_lines} would choose on lines scored after {first_scored}")
    lm = general_lines = exclude = general_sources = None
    if args.tune_decoding:
        from recognition.char_lm import CharacterLanguageModel
        from training import char_lm

        lm = CharacterLanguageModel.load(args.lm)
        if args.book_lm_corpus:
            exclude = args.book_lm_exclude if args.book_lm_exclude is not None else [Path(args.book).resolve().name]
            general_lines, general_sources = char_lm.read_lines(args.book_lm_corpus, exclude)
    pool = None
    if args.choose == "lowest-confidence":
        pool = selection.read_pool(args.base, samples[:args.evaluate_after])
        print(f"the base model reads the {args.evaluate_after} lines chosen from with CER "
              f"{100 * pool.cer(range(len(pool.samples))):.2f}%", flush=True)
    chosen = {n: pool.lowest_confidence(n) if pool else list(range(n)) for n in counts}
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-adaptation-"))
    try:
        for stale in [work / "evaluation", *(work / f"n{n}" for n in counts if not args.reuse_kept)]:
            shutil.rmtree(stale, ignore_errors=True)   # a kept folder from an earlier run: its cache stays
        link(rest, work / "evaluation")
        points = []
        for n in counts:
            points.append(run_point(n, [samples[i] for i in chosen[n]], samples, work / "evaluation", work, args))
            p = points[-1]
            if pool and n:
                p["chosen"] = selection.describe(pool, chosen[n], n)
            print(f"N={n:4d}: CER {100 * p['book_cer']:.2f}% on {len(rest)} lines, {p['minutes']:.1f} min "
                  f"({p['cpu_minutes']:.1f} CPU min), gate: {p['gate']}", flush=True)
            if args.tune_decoding:
                p["decoding"] = decoding_point(n, p["model"], [samples[i] for i in chosen[n]], samples, rest, lm,
                                               general_lines, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    from bench.machine import machine

    report = {"book": args.book, "base": args.base, "book_lines": len(samples), "evaluation_lines": len(rest),
              "evaluation_first": Path(rest[0].image_path).name, "adapt_args": args.adapt_args, "machine": machine(),
              "load_average": os.getloadavg(), "choose": args.choose, "points": points}
    if pool:
        report["pool"] = {"lines": len(pool.samples), "base_cer": pool.cer(range(len(pool.samples))),
                          "chosen_by": "the base model's line confidence (Recognizer, its calibration, greedy), "
                                       "lowest first, ties in file order; kept in file order"}
    if args.tune_decoding:
        report["decoding"] = {"lm": args.lm, "book_lm_corpus": args.book_lm_corpus, "base_tune_lines":
                              args.base_tune_lines, "chosen_on": "corrected lines the model did not train on "
                              "(the gate's held-out fifth; N = 0: all the first base_tune_lines, the book LM's "
                              "fifth of them); the book LM adds the text of the other four fifths"}
        if general_lines is not None:   # what the book LM read of the general text, the book's own files left out
            report["decoding"].update(book_lm_exclude=exclude, book_lm_sources=general_sources)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    plot(report, out.with_suffix(".png"))
    print("| corrected | choice | base CER of the chosen | CER on the rest | minutes | CPU minutes | gate |\n"
          "|---:|---|---:|---:|---:|---:|---|")
    for p in points:
        hard = f"{100 * p['chosen']['base_cer']:.2f}%" if "chosen" in p else ""
        print(f"| {p['corrected']} | {args.choose} | {hard} | {100 * p['book_cer']:.2f}% | {p['minutes']:.1f} | "
              f"{p['cpu_minutes']:.1f} | {'accepted' if p['accepted'] else 'refused'} |")
    if args.tune_decoding:
        print_decoding(points)
    return 0


def check_options(parser: argparse.ArgumentParser, args) -> None:
    """Refuse options that would be accepted and then ignored (a run that does not measure what was asked)."""
    counts = {int(n) for n in args.corrected.split(",") if n.strip()}
    if args.reuse_kept and not args.keep:
        parser.error("--reuse-kept needs --keep DIR (the folder whose results it reuses)")
    given = [f"--{name.replace('_', '-')}" for name in ("lm", "book_lm_corpus", "book_lm_exclude", "base_tune_lines")
             if getattr(args, name) != parser.get_default(name)]
    if given and not args.tune_decoding:
        parser.error(f"{', '.join(given)} only apply with --tune-decoding")
    if args.base_tune_lines != parser.get_default("base_tune_lines") and 0 not in counts:
        parser.error("--base-tune-lines only applies to N = 0 (--corrected 0,...)")
    if args.book_lm_exclude is not None and not args.book_lm_corpus:
        parser.error("--book-lm-exclude only applies with --book-lm-corpus")
    if args.choose == "lowest-confidence":
        if args.evaluate_after <= 0:
            parser.error("--choose lowest-confidence needs --evaluate-after M > 0: it chooses among the first M "
                         "lines, none of which is scored")
        if counts and max(counts) > args.evaluate_after:
            parser.error(f"--choose lowest-confidence: N = {max(counts)} is more than the "
                         f"{args.evaluate_after} lines it chooses from (--evaluate-after)")
    small = sorted(n for n in counts if 0 < n < HELDOUT_EVERY)
    if small:
        # The gate (and --tune-decoding) would have to choose the epoch, calibrate and decide on lines that are
        # scored. The service never meets this: it adapts from OCR_ADAPT_MIN_LINES (100) reviewed lines.
        parser.error(f"--corrected: N = {', '.join(map(str, small))} leaves no corrected line held out for the gate "
                     f"(every {HELDOUT_EVERY}th is): give N = 0 or N >= {HELDOUT_EVERY}")


def decoding_point(n: int, model: str, chosen: list, samples: list, rest: list, lm, general_lines, args) -> dict:
    """The decoding chosen on this N's corrected lines (N = 0: the first --base-tune-lines), scored on the rest."""
    from bench.adaptation_decoding import tune_point

    corrected = chosen if n else samples[:args.base_tune_lines]
    train, _ = split_corrected(corrected)
    return tune_point(Path(model), corrected, train if n else [], train, rest, lm, general_lines,
                      lambda message: print(message, flush=True))


def print_decoding(points: list[dict]) -> None:
    def setting(row: dict) -> str:
        return "greedy" if row["decoder"] == "greedy" else f"{row['decoder']} a={row['alpha']} b={row['beta']}"

    print("\n| corrected | chosen on | chosen | rest CER greedy | rest CER chosen | with book LM (chosen) | "
          "shipped settings | ms/line model + decoding (greedy / chosen) |\n|---:|---:|---|---:|---:|---|---:|---|")
    for p in points:
        d, rest = p["decoding"], p["decoding"]["rest"]
        book = (f"{100 * rest['chosen, book LM']['cer']:.2f}% ({setting(d['book_chosen'])}, on "
                f"{d['tuned_on']['book_lm']})" if "book_chosen" in d else "")
        print(f"| {p['corrected']} | {d['tuned_on']['general_lm']} | {setting(d['chosen'])} | "
              f"{100 * rest['greedy']['cer']:.2f}% | {100 * rest['chosen']['cer']:.2f}% | {book} | "
              f"{100 * rest['shipped settings']['cer']:.2f}% | {d['model_ms']:.1f} + {rest['greedy']['decoding_ms']:.2f}"
              f" / {rest['chosen']['decoding_ms']:.2f} |")
        if "all_corrected" in d:
            print(f"|   | all {p['corrected']} (control) | {setting(d['all_corrected']['chosen'])} | | "
                  f"{100 * rest['chosen on all N']['cer']:.2f}% | | | |")


if __name__ == "__main__":
    sys.exit(main())
