"""Write a model card from what was measured in one run, and nothing else.

    python -m training.model_card models/arabic-crnn-v2.onnx --run runs/crnn-v2 \\
        --evaluation runs/eval-v2/evaluation.json runs/eval-v2-int8/evaluation.json \\
        --leave-one-out IbnAthir=runs/loo-IbnAthir/evaluation.json ... \\
        --calibration models/arabic-crnn-v2-calibration.json models/arabic-crnn-v2-int8-calibration.json \\
        --bench bench/results/recognizer.json --synth data/synth/synth.json \\
        --curves models/arabic-crnn-v2-curves.png --notes notes.md --out models/MODEL_CARD.md

Every figure comes from a file it is given: the model's own metadata
(architecture, alphabet, training data with line counts, training time and
machine, export date), the run's ``state.json`` (epochs, steps, batch size,
the learning rates actually used; ``--history`` takes the run's history CSV
when the run folder is gone), ``training.evaluate`` JSONs (per-book table,
confidence measures), leave-one-book-out evaluations, ``training.calibrate``
reports, a ``bench.recognizer`` JSON (speed) and ``training.synth``'s
``synth.json`` (fonts). A section whose file is not given is left out or
says so; nothing is assumed. ``--notes`` is appended as written.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from recognition.calibration import METADATA_KEY
from recognition.metadata import ModelInfo

from .formatting import percent


def _unsteered(state: dict | None) -> bool:
    """Whether the validation book neither set the run's learning rate nor stopped it."""
    args = (state or {}).get("args") or {}
    # A run without a --patience (training.train_torch, converted by training.torch_to_keras) has no early
    # stopping at all: its cosine schedule over fixed epochs is as unsteered as train.py's with patience >= epochs.
    patience = int(args["patience"]) if "patience" in args else int(args.get("epochs", 1))
    return (args.get("lr_schedule") == "cosine" and (state or {}).get("stop_reason") == "epochs done"
            and patience >= int(args.get("epochs", 1)))


def _book(source: str) -> str:
    """``openiti-gs/book_IbnAthir.Kamil/7_final`` -> ``book_IbnAthir.Kamil`` (the folder under the dataset)."""
    parts = source.split("/")
    return parts[1] if len(parts) >= 2 else source


def read_info(model: Path) -> ModelInfo:
    import onnx

    return ModelInfo.from_props({p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props})


def training_splits(info: ModelInfo) -> tuple[dict[str, int], dict[str, int], dict[str, int], float | None]:
    """(real training sources, validation sources, synthetic folders), each with line counts; synth ratio."""
    try:
        data = json.loads(info.training_data or "{}")
    except ValueError:
        return {}, {}, {}, None
    train: dict[str, int] = {}
    val: dict[str, int] = {}
    synth: dict[str, int] = {}
    for folder in data.get("real", []):
        for split, sources in folder.items():
            target = train if split == "train" else val if split == "val" else None
            if target is not None and isinstance(sources, dict):
                target.update(sources)
    for folder in data.get("synthetic", []):
        for sources in folder.values():
            if isinstance(sources, dict):
                synth.update(sources)
    return train, val, synth, data.get("synth_ratio")


def _history(state: dict | None, history_csv: Path | None) -> list[dict]:
    if state and state.get("history"):
        return state["history"]
    if history_csv:
        with history_csv.open(encoding="utf-8", newline="") as f:
            return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return []


def _files(model: Path) -> list[str]:
    rows = ["| file | size |", "|---|---:|"]
    siblings = [model, model.with_name(model.stem + "-int8.onnx"), model.with_suffix(".keras"), model.with_suffix(".json")]
    for path in siblings:
        if path.exists():
            size = path.stat().st_size
            rows.append(f"| `{path.name}` | " + (f"{size / 1e6:.1f} MB |" if size >= 100_000 else f"{size / 1e3:.0f} kB |"))
    return rows


def _architecture(info: ModelInfo) -> list[str]:
    try:
        arch = json.loads(info.extra.get("architecture", "{}"))
    except ValueError:
        arch = {}
    lines = [f"- input height {info.input_height} px, any width; one CTC frame per {info.width_stride} px; "
             f"softmax over {len(info.alphabet)} characters + blank"]
    if arch:
        lines.append("- layout (the model's `architecture` metadata): "
                     + ", ".join(f"{k} {v}" for k, v in arch.items()))
    if info.extra.get("parameters"):
        lines.append(f"- {int(info.extra['parameters']):,} parameters")
    lines += [f"- alphabet: `{''.join(info.alphabet.characters)}`",
              f"- preprocessing `{info.normalisation}`, text convention `{info.text_normalisation}` "
              "(`recognition.image`, `recognition.text`)"]
    if info.extra.get("quantization"):
        lines.append(f"- quantization: {info.extra['quantization']}")
    return lines + _members(info)


def _members(info: ModelInfo) -> list[str]:
    """An ensemble (``training.ensemble``): the models whose per-frame probabilities it averages."""
    try:
        members = json.loads(info.extra.get("ensemble", "[]"))
    except ValueError:
        members = []
    if not members:
        return []
    lines = [f"- an **ensemble** of {len(members)} models read side by side, their per-frame probabilities averaged "
             "(`training.ensemble`; it costs their summed time):"]
    for m in members:
        facts = [f"{m.get('name')} {m.get('version')}"]
        if m.get("exported_epoch") not in (None, "None"):
            facts.append(f"epoch {m['exported_epoch']}")
        if m.get("validation_cer") is not None:
            facts.append(f"validation CER {percent(m['validation_cer'])}")
        if m.get("training_seconds"):
            facts.append(f"{float(m['training_seconds']) / 60:.0f} minutes of training")
        if m.get("training_machine"):
            facts.append(f"on {m['training_machine']}")
        lines.append(f"  - `{m.get('file')}` ({', '.join(facts)}; SHA-256 {str(m.get('sha256', ''))[:12]}...)")
    return lines


def _training(info: ModelInfo, state: dict | None, history: list[dict], synth_reports: list[dict],
              curves: str | None) -> list[str]:
    train, val, synth, ratio = training_splits(info)
    lines = []
    if train:
        lines.append("- real lines, training: " + ", ".join(f"{_book(s)} ({n})" for s, n in train.items())
                     + f"; {sum(train.values())} lines")
    if val:
        lines.append("- real lines, validation (held out whole): "
                     + ", ".join(f"{_book(s)} ({n})" for s, n in val.items()))
    if synth:
        lines.append(f"- synthetic lines: {sum(synth.values())} ("
                     + ", ".join(f"{s}: {n}" for s, n in synth.items()) + ")"
                     + (f", {100 * ratio:.0f}% of the batches" if ratio is not None else ""))
    if synth_reports:
        for report in synth_reports:
            fonts = report.get("fonts", [])
            used = report.get("fonts_used_this_run") or {}
            lines.append(f"- synthetic set of {report.get('lines', '?')} lines (seed {report.get('seed', '?')}): "
                         f"{len(fonts)} font faces: {', '.join(fonts)}"
                         + (f"; {len(used)} of them drew lines in that run" if used else ""))
    elif synth:
        lines.append("- fonts of the synthetic lines: not given to this card (pass the sets' `synth.json`)")
    if history:
        best = min(history, key=lambda row: row["val_cer"])
        learning_rates = []
        for row in history:
            if not learning_rates or abs(row["lr"] - learning_rates[-1][1]) > 1e-12:
                learning_rates.append((row["epoch"], row["lr"]))
        lines.append(f"- {len(history)} epochs, {int(history[-1]['step'])} steps"
                     + (f" of batch {state['args']['batch_size']}" if state and state.get("args") else "")
                     + f"; best validation CER {percent(best['val_cer'])} at epoch {best['epoch']}")
        if info.extra.get("exported_checkpoint") == "last.keras":
            last = history[-1]
            lines.append(f"- the model is the **last** epoch's ({last['epoch']}, validation CER {percent(last['val_cer'])}): "
                         + ("the epochs and a cosine learning rate were fixed before the run, so the held-out book "
                            "did not choose it" if _unsteered(state) else
                            "but the held-out book may have steered the run (its learning-rate halvings or early "
                            "stop, or the run's record does not say)"))
        elif info.extra.get("exported_epoch") not in (None, "None"):
            lines.append(f"- the model is the best epoch's ({info.extra['exported_epoch']}), chosen on the validation "
                         "book: its figure on that book is optimistic by that choice")
        lines.append("- learning rate by epoch: " + ", ".join(f"{lr:.2g} from {epoch}" for epoch, lr in learning_rates))
        if (state or {}).get("ema_momentum"):
            lines.append(f"- the weights saved and validated are a moving average of the trained ones (momentum "
                         f"{state['ema_momentum']} per step, about the last {1 / (1 - state['ema_momentum']):.0f} steps)")
        if (state or {}).get("averaged_epochs"):
            epochs = state["averaged_epochs"]
            lines.append(f"- the model is the mean of the models of epochs {epochs[0]}-{epochs[-1]}, the run's last "
                         f"{len(epochs)} (training.average_epochs); the validation figures by epoch are each epoch's")
        lines.append(f"- {history[-1]['seconds'] / 60:.0f} minutes of training (the run's own clock)")
    elif info.extra.get("training_seconds"):
        lines.append(f"- {float(info.extra['training_seconds']) / 60:.0f} minutes of training")
    machine = (state or {}).get("machine") or info.extra.get("training_machine")
    if machine:
        lines.append(f"- trained on: {machine}")
    if info.extra.get("exported"):
        lines.append(f"- exported {info.extra['exported']}")
    if info.validation_cer is not None:
        lines.append(f"- validation CER recorded in the model: {percent(info.validation_cer)}")
    if curves:
        lines += ["", f"![training curves]({curves})"]
    return lines


def _accuracy(evaluation: dict, train: dict, val: dict) -> list[str]:
    def seen(source: str) -> str:
        if source == "all":
            return "-"
        if source in val:
            return "no (held out)"
        return "yes" if source in train else "no"

    lines = [f"### `{Path(evaluation['model']).name}` on {evaluation['lines']} lines", "",
             "| book | lines | CER | WER | CER without harakat/tatweel | seen in training |",
             "|---|---:|---:|---:|---:|---|"]
    for source, row in evaluation["results"].items():
        lines.append(f"| {_book(source)} | {row['lines']} | {percent(row['cer'])} | {percent(row['wer'])} | "
                     f"{percent(row['cer_no_harakat_tatweel'])} | {seen(source)} |")
    confusions = evaluation["results"].get("all", {}).get("confusions", [])[:12]
    if confusions:
        lines += ["", "Most frequent confusions (reference -> recognised): " + ", ".join(
            f"`{c['reference'] or '∅'}`->`{c['hypothesis'] or '∅'}` ({c['count']})" for c in confusions)]
    confidence = evaluation.get("confidence")
    if confidence:
        lines += ["", "Confidences as served (calibration error per character and per line; share of all "
                  "character errors in the lowest-confidence 10% of lines, random order 10%):", "",
                  "| book | character ECE | line ECE | errors in lowest 10% | best possible |",
                  "|---|---:|---:|---:|---:|"]
        for source, m in confidence.items():
            lines.append(f"| {_book(source)} | {percent(m['character_ece'])} | {percent(m['line_ece'])} | "
                         f"{100 * m['error_share_lowest_10pct']:.1f}% | {100 * m['error_share_best_possible']:.1f}% |")
    return lines + [""]


def _leave_one_out(results: dict[str, dict]) -> list[str]:
    lines = ["| held-out book | model | lines | CER | WER |", "|---|---|---:|---:|---:|"]
    cers = []
    for book, evaluation in results.items():
        sources = [s for s in evaluation["results"] if s != "all" and book in s]
        if len(sources) != 1:
            raise SystemExit(f"--leave-one-out {book}: its evaluation has {len(sources)} sources matching {book!r}")
        row = evaluation["results"][sources[0]]
        cers.append(row["cer"])
        lines.append(f"| {_book(sources[0])} | `{Path(evaluation['model']).name}` | {row['lines']} | "
                     f"{percent(row['cer'])} | {percent(row['wer'])} |")
    lines.append(f"| mean of {len(cers)} | | | {percent(sum(cers) / len(cers))} | |")
    return lines + [""]


def _calibration(report: dict, out_dir: Path, report_path: Path) -> list[str]:
    lines = [f"### `{report['model']}`: fitted on {report['calibration'].get('fitted_on', '?')}", "",
             "| half | lines | character ECE raw -> calibrated | line ECE raw -> calibrated | "
             "errors in lowest 10% (best possible) |", "|---|---:|---:|---:|---:|"]
    for half, label in (("fit", "fit (first half)"), ("check", "check (second half, unseen by the fit)"),
                        ("all", "whole book")):
        raw, cal = report[half]["raw"], report[half]["calibrated"]
        lines.append(f"| {label} | {report[half]['lines']} | {percent(raw['character_ece'])} -> "
                     f"{percent(cal['character_ece'])} | {percent(raw['line_ece'])} -> {percent(cal['line_ece'])} | "
                     f"{100 * cal['error_share_lowest_10pct']:.1f}% ({100 * cal['error_share_best_possible']:.1f}%) |")
    diagram = report_path.with_name(report_path.name.replace("-calibration.json", "-reliability.png"))
    if diagram.exists():
        lines += ["", f"![reliability of {report['model']}]({os.path.relpath(diagram, out_dir)})"]
    return lines + [""]


def _speed(bench: dict) -> list[str]:
    lines = [f"Machine: {bench['machine']['cpu']}, {bench['machine']['cores']} cores, {bench.get('when', '?')}. "
             f"{bench['lines']} lines of {', '.join(_book(s) for s in bench['sources'])}, median width "
             f"{bench['median_width_px']} px. Per line: image decoding, preprocessing, model and decoding.", "",
             "| system | batch | threads | median ms/line | p90 ms | CER | x Tesseract speed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in bench["rows"]:
        lines.append(f"| {row['label']} | {row['batch']} | {row['threads']} | {row['median_ms']:.2f} | "
                     f"{row['p90_ms']:.2f} | {percent(row['cer'])} | {row.get('speedup_vs_tesseract') or 'n/a'} |")
    return lines + [""]


def _summary(evaluations: list[dict], val: dict, bench: dict | None, leave_one_out: dict | None) -> list[str]:
    """The headline figures, each from the section below it that measured it."""
    lines = []
    for evaluation in evaluations:
        for source, row in evaluation["results"].items():
            if source in val:
                lines.append(f"- `{Path(evaluation['model']).name}` on the held-out {_book(source)}: "
                             f"CER {percent(row['cer'])}, WER {percent(row['wer'])} ({row['lines']} lines)")
                confidence = evaluation.get("confidence", {}).get(source)
                if confidence:
                    lines.append(f"  - its lowest-confidence 10% of lines hold "
                                 f"{100 * confidence['error_share_lowest_10pct']:.1f}% of the character errors "
                                 f"(best possible {100 * confidence['error_share_best_possible']:.1f}%, random 10%)")
    if leave_one_out:
        cers = [row["cer"] for e in leave_one_out.values() for s, row in e["results"].items()
                if s != "all" and any(book in s for book in leave_one_out)]
        if cers:
            lines.append(f"- leave-one-book-out: mean CER {percent(sum(cers) / len(cers))} over {len(cers)} books")
    if bench:
        for row in bench["rows"]:
            if row["batch"] == 1 and row["threads"] == 1:
                lines.append(f"- {row['label']}: {row['median_ms']:.1f} ms per line (median, batch 1, one thread), "
                             f"CER {percent(row['cer'])} on the benchmark lines")
    return (["## Summary (measured; details below)", "", *lines, ""]) if lines else []


def build(model: Path, out: Path, state: dict | None = None, history_csv: Path | None = None,
          evaluations: list[dict] = (), leave_one_out: dict[str, dict] | None = None,
          calibrations: list[tuple[Path, dict]] = (), bench: dict | None = None,
          synth_reports: list[dict] = (), curves: Path | None = None, notes: str = "") -> str:
    info = read_info(model)
    train, val, _, _ = training_splits(info)
    out_dir = out.parent
    lines = [f"# Model card: {info.name} {info.version}", "",
             "Arabic printed text-line recogniser (CTC, decoded greedily by `recognition.ctc`). Input: one line "
             "image; output: Unicode text in logical order, a line confidence and per-character confidences.", "",
             *_summary(list(evaluations), val, bench, leave_one_out),
             "## Files", "", *_files(model), "", "## Architecture", "", *_architecture(info), "",
             "## Training", "",
             *_training(info, state, _history(state, history_csv), list(synth_reports),
                        os.path.relpath(curves, out_dir) if curves else None), ""]
    if evaluations:
        lines += ["## Accuracy per book (`training.evaluate`)", "",
                  "Only a book held out of training measures generalisation; books seen in training show the fit.", ""]
        for evaluation in evaluations:
            lines += _accuracy(evaluation, train, val)
    lines += ["## Leave-one-book-out (`training.evaluate` of one model per held-out book)", ""]
    lines += _leave_one_out(leave_one_out) if leave_one_out else ["Not measured for this model.", ""]
    stored = info.calibration
    lines += ["## Confidence calibration (`training.calibrate`)", ""]
    if stored is None:
        lines += ["This model carries no calibration: its confidences are the raw scores of `recognition.ctc`.", ""]
    else:
        lines += [f"The model file carries `{METADATA_KEY}` (fitted on {stored.fitted_on}): a character's "
                  "confidence is the probability, measured on that book, that it is right; a line's, that the "
                  "whole line is. ECE: expected calibration error over ten equal-width bins.", ""]
    for path, report in calibrations:
        lines += _calibration(report, out_dir, path)
    if bench:
        lines += ["## Speed and accuracy against Tesseract (`bench.recognizer`, same lines, same run)", "",
                  *_speed(bench)]
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the exported .onnx (its -int8.onnx, .keras and .json beside it)")
    parser.add_argument("--run", type=Path, help="the training run folder (its state.json)")
    parser.add_argument("--history", type=Path, help="the run's history CSV, when the run folder is not at hand")
    parser.add_argument("--evaluation", nargs="*", type=Path, default=[], help="evaluation.json(s) from training.evaluate")
    parser.add_argument("--leave-one-out", nargs="*", default=[], metavar="BOOK=EVALUATION",
                        help="per held-out book, the evaluation.json of the model trained without it")
    parser.add_argument("--calibration", nargs="*", type=Path, default=[],
                        help="MODEL-calibration.json report(s) from training.calibrate")
    parser.add_argument("--bench", type=Path, help="recognizer.json from bench.recognizer")
    parser.add_argument("--synth", nargs="*", type=Path, default=[], help="synth.json of each synthetic set")
    parser.add_argument("--curves", type=Path, help="the training curves image to show")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended as is (limits, caveats)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    def load(path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8"))

    leave_one_out = {}
    for pair in args.leave_one_out:
        book, _, path = pair.partition("=")
        if not path:
            parser.error(f"--leave-one-out wants BOOK=EVALUATION, got {pair!r}")
        leave_one_out[book] = load(Path(path))
    text = build(args.model, args.out, state=load(args.run / "state.json") if args.run else None,
                 history_csv=args.history, evaluations=[load(p) for p in args.evaluation],
                 leave_one_out=leave_one_out or None, calibrations=[(p, load(p)) for p in args.calibration],
                 bench=load(args.bench) if args.bench else None, synth_reports=[load(p) for p in args.synth],
                 curves=args.curves, notes=args.notes.read_text(encoding="utf-8") if args.notes else "")
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
