"""Adapt a model to one book: fine-tune on its corrected lines, with a replay of general print.

    python -m training.adapt --base models/arabic-crnn-v2-int8.onnx --train BOOK_LINES --heldout HELD_OUT \\
        --global-model models/arabic-crnn-v2-int8.onnx --out runs/adapt-book7 --name book7 --version 1

What the product's "Adapt the model to this book" runs (in a subprocess of the training worker: the
serving process never imports TensorFlow) and what ``bench.adaptation`` measures, so both are the same:

1. the book's lines (``--train``) and its held-out slice (``--heldout``) become arrays at the base
   model's height (``training.preprocess``);
2. general print is replayed so the model does not forget it: synthetic lines rendered on the fly from
   the shipped corpus (``training.synth``; cached in ``--cache``) or shards given with ``--replay-shards``;
3. ``training.train --init-from`` the base model's Keras twin (``NAME.keras`` beside ``NAME.onnx``;
   for ``NAME-int8.onnx`` the float model's), validating on the held-out slice, for a step budget that
   grows with the book's lines (``training_plan``; cosine learning rate, smoothed held-out CER, no early
   stop before half the budget: ``training.schedule``);
4. the best check is exported (``training.export``; ``--int8`` too when the base model is int8) with the
   book's spacing around punctuation learned from its corrected lines (``learn_book_conventions``,
   ``recognition.conventions``) and a confidence calibration (``calibrate_adapted``);
5. held-out CER before (base) and after (candidate, with its book's conventions, as it will serve), and
   the general reference set's CER for the candidate (without them: that set is transcribed by other
   conventions, and what it checks is that general print is still read) and the global model
   (``--reference``, or lines rendered from the corpus in a face of their own), go to ``result.json``
   with the verdict of ``recognition.adaptation_gate``.

Progress while it trains is the run's ``state.json`` (one entry per epoch); the log is this command's
output.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from recognition import model_files
from recognition.adaptation_gate import DEFAULT_MAX_FORGETTING, judge_adaptation
from recognition.line_data import SkipReport, iter_samples

from .corpus import DEFAULT_CORPUS

log = logging.getLogger("training.adapt")

REPLAY_SEED = 7
REFERENCE_SEED = 13
REFERENCE_FONT = "NotoNaskhArabic-Regular"


def keras_twin(onnx_path: Path) -> Path:
    """The Keras checkpoint an ONNX model was exported from (int8 models share their float model's)."""
    twin = model_files.keras_twin(onnx_path)
    if twin is None:
        raise SystemExit(f"{onnx_path} cannot be fine-tuned: no Keras checkpoint beside it "
                         f"({' or '.join(c.name for c in model_files.keras_twin_candidates(onnx_path))})")
    return twin


def rendered_lines(out: Path, lines: int, seed: int, fonts: list[str] | None, corpus: list[str]) -> Path:
    """``lines`` synthetic lines in ``out`` (kept between runs: rendering is deterministic by seed)."""
    from . import synth

    done = out / "synth.json"
    if done.exists() and json.loads(done.read_text(encoding="utf-8")).get("lines") == lines:
        return out
    argv = ["--lines", str(lines), "--out", str(out), "--seed", str(seed), "--workers", "1", "--corpus", *corpus]
    if fonts:
        argv += ["--fonts", *fonts]
    synth.main(argv)
    return out


def line_count(folders: list[str]) -> int:
    return sum(1 for _ in iter_samples(folders, SkipReport()))


def model_cer(model: Path, folders: list[str], apply_conventions: bool = True) -> tuple[float, list[dict]]:
    """CER of ``model`` on the line folders, and each line's reading (with the model's book conventions
    unless ``apply_conventions`` is False)."""
    from recognition.recognizer import Recognizer

    evaluation = Recognizer(model, apply_conventions=apply_conventions).evaluate(iter_samples(folders, SkipReport()))
    readings = [{"name": Path(s.image_path).stem, "text": ref, "reading": hyp}
                for s, ref, hyp in zip(evaluation.samples, evaluation.references, evaluation.hypotheses)]
    return evaluation.cer, readings


def adapt(args) -> dict:
    from . import preprocess, train
    from .checkpoint import read_info
    from .export import export_run, parity_lines_from, quantize_int8

    started, cpu_started = time.monotonic(), time.process_time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    base = Path(args.base)
    global_model = Path(args.global_model or args.base)
    base_cer, base_readings = model_cer(base, args.heldout)
    log.info("the base model reads the held-out lines with CER %.4f", base_cer)
    reference = args.reference or [str(rendered_lines(cache / f"reference-{args.reference_lines}",
                                                      args.reference_lines, REFERENCE_SEED, [REFERENCE_FONT],
                                                      args.corpus))]
    global_reference_cer, _ = model_cer(global_model, reference)
    result = {"base_model": str(base), "global_model": str(global_model), "reference": reference,
              "train_lines": line_count(args.train) if args.train else 0, "heldout_lines": len(base_readings),
              "before_cer": base_cer, "global_reference_cer": global_reference_cer}
    if not args.train or result["train_lines"] == 0:
        result.update(after_cer=base_cer, accepted=False, reason="no corrected lines to adapt on", epochs=0,
                      model=None, minutes=(time.monotonic() - started) / 60)
        return _finish(out, result, cpu_started)

    checkpoint = keras_twin(base)
    height = read_info(checkpoint)[1].height
    book_dir = out / "lines"
    if book_dir.exists():
        shutil.rmtree(book_dir)
    # The folder names are the sources: the held-out slice is the validation split.
    _link_lines(args.train, book_dir / "book")
    _link_lines(args.heldout, book_dir / "heldout")
    arrays = out / "arrays"
    preprocess.main([str(book_dir / "book"), str(book_dir / "heldout"), "--out", str(arrays),
                     "--val-source", "heldout", "--height", str(height), "--workers", "1"])
    replay = list(args.replay_shards)
    if not replay and args.replay_lines:
        rendered = rendered_lines(cache / f"replay-{args.replay_lines}", args.replay_lines, REPLAY_SEED, None,
                                  args.corpus)
        replay_arrays = cache / f"replay-{args.replay_lines}-h{height}"
        if not (replay_arrays / "manifest.json").exists():
            preprocess.main([str(rendered), "--out", str(replay_arrays), "--height", str(height), "--workers", "1"])
        replay = [str(replay_arrays)]
    run = out / "run"
    plan = training_plan(result["train_lines"], args)
    log.info("training plan: %s", plan)
    train_argv = ["--data", str(arrays), "--out", str(run), "--init-from", str(checkpoint),
                  "--lr", str(args.lr), "--lr-schedule", args.lr_schedule, "--warmup", str(args.warmup),
                  "--epochs", str(plan["epochs"]), "--steps-per-epoch", str(plan["steps_per_epoch"]),
                  "--max-steps", str(plan["max_steps"]), "--min-steps", str(plan["min_steps"]),
                  "--patience", str(args.patience), "--val-smoothing", str(args.val_smoothing),
                  "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                  "--max-minutes", str(args.max_minutes), "--seed", str(args.seed)]
    if replay:
        train_argv += ["--synth", *replay, "--synth-ratio", str(args.replay_ratio)]
    if args.no_augment:
        train_argv.append("--no-augment")
    train.main(train_argv)
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))

    model = out / f"{args.name}.onnx"
    export_run(run, model, args.name, args.version, parity_lines_from([str(arrays)], 8))
    conventions = learn_book_conventions(model, args) if args.conventions else {"rules": [], "candidates": []}
    calibration = calibrate_adapted(model, base, args.heldout, args.calibrate_min_lines)
    if args.int8:
        int8 = model.with_name(f"{model.stem}-int8.onnx")
        quantize_int8(model, int8, parity_lines_from([str(arrays)], 8))
        model = int8
    after_cer, after_readings = model_cer(model, args.heldout)
    # The book's held-out lines are read as the model will serve them, with its book's conventions. The
    # general reference set is transcribed by other conventions: read without them, it measures whether
    # the model still reads general print (forgetting), not whether its book spaces "." as the corpus does.
    reference_cer, _ = model_cer(model, reference, apply_conventions=False)
    reference_cer_with_conventions = (model_cer(model, reference)[0] if conventions["rules"] else reference_cer)
    verdict = judge_adaptation(base_cer, after_cer, reference_cer, global_reference_cer, args.max_forgetting)
    changed = [{"name": b["name"], "text": b["text"], "before": b["reading"], "after": a["reading"]}
               for b, a in zip(base_readings, after_readings) if b["reading"] != a["reading"]]
    result.update(after_cer=after_cer, reference_cer=reference_cer, accepted=verdict.accepted,
                  reason=verdict.reason, model=str(model), epochs=state["epoch"], best_epoch=state["best_epoch"],
                  steps=state["step"], plan=plan, calibration=calibration,
                  conventions={**conventions, "reference_cer_with_them": reference_cer_with_conventions},
                  history=state["history"], heldout_changed=changed, replay=replay,
                  minutes=(time.monotonic() - started) / 60)
    log.info("%s", verdict.reason)
    return _finish(out, result, cpu_started)


def learn_book_conventions(model: Path, args) -> dict:
    """Store the book's spacing around punctuation in the adapted model (``recognition.conventions``).

    Learned from the corrected lines trained on, never from the held-out slice: the gate judges the
    adapted model with its conventions applied, as it will serve, and that judgement stays fair. A rule
    where those lines are consistent is kept if it corrects the model's own readings of them. Written
    before the calibration (fitted on what the model serves) and the int8 twin (which inherits it).
    """
    from recognition.conventions import METADATA_KEY, keep_helpful, learn_conventions, punctuation_marks
    from recognition.recognizer import Recognizer

    from .calibrate import write_model_property

    _, readings = model_cer(model, args.train)
    references = [r["text"] for r in readings]
    marks = punctuation_marks(Recognizer(model).info.alphabet.characters)
    candidates = learn_conventions(references, marks, args.conventions_min_count, args.conventions_min_share,
                                   learned_from=f"{len(references)} corrected lines of the book")
    kept, report = keep_helpful(candidates, references, [r["reading"] for r in readings], args.conventions_min_gain)
    if kept:
        write_model_property(model, METADATA_KEY, kept.to_json())
    log.info("transcription conventions: %s", "; ".join(r.describe() for r in kept.rules) or "none")
    return {"rules": [r.describe() for r in kept.rules], "candidates": report}


def calibrate_adapted(model: Path, base: Path, heldout: list[str], min_lines: int) -> str:
    """Give the adapted model confidence calibration (``recognition.calibration``); say where it came from.

    Refitted on the held-out slice when it has ``min_lines`` lines (calibration changes no reading, so the
    gate's CER on the same lines stays honest); otherwise the base model's maps are carried over: a
    slice of 10-80 lines is too few to fit a line map, and the base model's maps were fitted on a book
    it never trained on, as the adapted model's slice is. The int8 twin is quantised from this model
    and inherits its metadata.
    """
    import onnx

    from recognition.calibration import ConfidenceCalibration

    from .calibrate import calibrate, write_calibration

    samples = list(iter_samples(heldout, SkipReport()))
    if min_lines and len(samples) >= min_lines:
        fitted, _ = calibrate(model, samples)
        write_calibration(model, fitted)
        return f"refitted on the {len(samples)} held-out lines"
    carried = ConfidenceCalibration.from_props({p.key: p.value for p in onnx.load(str(base)).metadata_props})
    if carried is None:
        return "none: the base model has no calibration and the held-out slice is too small to fit one"
    write_calibration(model, carried)
    return f"carried over from {base.name} ({carried.fitted_on}); {len(samples)} held-out lines are too few to refit"


def training_plan(train_lines: int, args) -> dict:
    """Steps to train for, how often to judge the held-out slice, and when stopping may start.

    The step budget grows with the book's lines (``--steps-per-line``, within ``--min-train-steps`` and
    ``--max-train-steps``; ``--max-minutes`` still caps the time): a fixed number of epochs over a few
    dozen lines is too few steps to move the model. The held-out slice is judged about
    ``--evaluations`` times a run, and early stopping may act only after ``--min-steps-share`` of the
    budget, so a noisy first epoch or two cannot end it.
    """
    max_steps = args.max_steps or int(min(args.max_train_steps,
                                          max(args.min_train_steps, round(args.steps_per_line * train_lines))))
    steps_per_epoch = args.steps_per_epoch or max(1, math.ceil(max_steps / args.evaluations))
    epochs = args.epochs or math.ceil(max_steps / steps_per_epoch)
    return {"max_steps": max_steps, "steps_per_epoch": steps_per_epoch, "epochs": epochs,
            "min_steps": int(args.min_steps_share * max_steps)}


def _finish(out: Path, result: dict, cpu_started: float) -> dict:
    # This process's CPU time plus its finished children's (preprocess and synth pools).
    children = os.times()
    result["cpu_minutes"] = (time.process_time() - cpu_started + children.children_user
                             + children.children_system) / 60
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(out / "result.json")
    return result


def _link_lines(folders: list[str], target: Path) -> None:
    """The line pairs of ``folders`` in one folder (symbolic links; names prefixed so they stay apart)."""
    target.mkdir(parents=True, exist_ok=True)
    for n, sample in enumerate(iter_samples(folders, SkipReport())):
        image = Path(sample.image_path).resolve()
        stem = f"{n:06d}-{image.stem}"
        (target / f"{stem}{image.suffix}").symlink_to(image)
        (target / f"{stem}.gt.txt").write_text(sample.text + "\n", encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.adapt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the book's current model (ONNX, a .keras twin beside it)")
    parser.add_argument("--global-model", help="the global model, for the no-forgetting check (default: --base)")
    parser.add_argument("--train", nargs="*", default=[], help="line folders of the book's corrected lines")
    parser.add_argument("--heldout", nargs="+", required=True, help="line folders of the held-out slice")
    parser.add_argument("--out", required=True, help="run folder: result.json, the model, run/state.json")
    parser.add_argument("--name", default="adapted", help="the adapted model's name")
    parser.add_argument("--version", default="1")
    parser.add_argument("--reference", nargs="*", help="general reference line folders (default: rendered)")
    parser.add_argument("--reference-lines", type=int, default=100, help="lines rendered for the default reference")
    parser.add_argument("--replay-lines", type=int, default=600, help="synthetic lines rendered for the replay")
    parser.add_argument("--replay-shards", nargs="*", default=[], help="preprocessed shards to replay instead")
    parser.add_argument("--replay-ratio", type=float, default=0.3, help="share of batches from the replay")
    parser.add_argument("--corpus", nargs="+", default=[DEFAULT_CORPUS], help="text to render replay lines from")
    parser.add_argument("--cache", help="where rendered replay/reference lines are kept (default: OUT/cache)")
    parser.add_argument("--steps-per-line", type=float, default=3.0,
                        help="training steps per corrected line trained on (the step budget)")
    parser.add_argument("--min-train-steps", type=int, default=200, help="the step budget's floor")
    parser.add_argument("--max-train-steps", type=int, default=1200, help="the step budget's ceiling")
    parser.add_argument("--max-steps", type=int, default=0, help="a fixed step budget instead (0: by lines)")
    parser.add_argument("--evaluations", type=int, default=20, help="held-out checks per run (sets the epoch)")
    parser.add_argument("--epochs", type=int, default=0, help="default: as many as the step budget needs")
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="default: step budget / --evaluations")
    parser.add_argument("--min-steps-share", type=float, default=0.5,
                        help="share of the step budget trained before early stopping may act")
    parser.add_argument("--patience", type=int, default=4, help="held-out checks without improvement to stop")
    parser.add_argument("--val-smoothing", type=float, default=0.5,
                        help="weight of the past in the moving average of the held-out CER that stopping judges")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4, help="the peak learning rate")
    parser.add_argument("--lr-schedule", choices=("cosine", "plateau"), default="cosine")
    parser.add_argument("--warmup", type=float, default=0.05, help="share of the run warming up the LR")
    parser.add_argument("--max-minutes", type=float, default=12.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--int8", action="store_true", help="register the int8 twin (as the shipped model is)")
    parser.add_argument("--calibrate-min-lines", type=int, default=200,
                        help="refit the confidence calibration on the held-out slice from this many lines "
                             "(fewer: carry the base model's over; 0: always carry over)")
    parser.add_argument("--no-conventions", dest="conventions", action="store_false",
                        help="do not learn the book's spacing around punctuation (recognition.conventions)")
    parser.add_argument("--conventions-min-share", type=float, default=0.9,
                        help="how consistent the corrected lines must be for a spacing rule")
    parser.add_argument("--conventions-min-count", type=int, default=10,
                        help="occurrences of a mark (on one side) a spacing rule needs")
    parser.add_argument("--conventions-min-gain", type=int, default=1,
                        help="errors a spacing rule must remove from the adapted model's readings of the corrected "
                             "lines it was learned from, to be kept")
    parser.add_argument("--max-forgetting", type=float, default=DEFAULT_MAX_FORGETTING)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    result = adapt(args)
    print(json.dumps({k: result[k] for k in ("train_lines", "heldout_lines", "before_cer", "after_cer",
                                             "accepted", "reason", "model", "minutes", "cpu_minutes")
                      if k in result}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
