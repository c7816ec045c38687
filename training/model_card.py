"""Write a model card from what was measured: metadata, evaluation, benchmark.

    python -m training.model_card models/arabic-crnn-v1.onnx --run runs/crnn-v1 \\
        --evaluation runs/eval-v1/evaluation.json --bench bench/results/recognizer.json \\
        --held-out IbnQutayba --notes notes.md --out models/MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _describe_data(raw: str) -> list[str]:
    try:
        data = json.loads(raw)
    except ValueError:
        return [f"- data: {raw}"]
    out = []
    for folder in data.get("real", []):
        for split, sources in folder.items():
            if isinstance(sources, dict):
                out.append(f"- real {split}: " + ", ".join(f"{s.split('/')[1] if '/' in s else s} ({n} lines)"
                                                          for s, n in sources.items()))
    synthetic = sum(n for f in data.get("synthetic", []) for v in f.values() if isinstance(v, dict)
                    for n in v.values())
    out.append(f"- synthetic: {synthetic} lines, {100 * (data.get('synth_ratio') or 0):.0f}% of the batches")
    return out


def build(model: Path, run: Path | None, evaluation: dict | None, bench: dict | None, held_out: str,
          notes: str) -> str:
    info = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    extra = info.get("extra", {})
    arch = json.loads(extra.get("architecture", "{}"))
    state = json.loads((run / "state.json").read_text(encoding="utf-8")) if run else {}
    lines = [
        f"# Model card: {info['name']} {info['version']}",
        "",
        "Arabic printed text-line recogniser: CNN + BiLSTM, CTC, greedy decoding. Input: one line image;",
        "output: Unicode text in logical order with per-character confidences.",
        "",
        "## Files",
        "",
        f"| file | size |\n|---|---|\n| `{model.name}` (ONNX, opset 17, metadata inside) | {model.stat().st_size / 1e6:.1f} MB |",
        f"| `{model.with_suffix('.keras').name}` (Keras 3, for fine-tuning) | "
        f"{model.with_suffix('.keras').stat().st_size / 1e6:.1f} MB |",
        f"| `{model.with_suffix('.json').name}` (the same metadata as JSON) | |",
        "",
        "## Architecture",
        "",
        f"- input height {info['input_height']} px, any width; one CTC frame per {info['width_stride']} px",
        f"- stem: 3x3 convolutions {arch.get('stem_channels')} at stride 2; depthwise-separable blocks "
        f"{arch.get('block_channels')} with height pooling {arch.get('block_pools')}",
        f"- BiLSTM {arch.get('lstm_units')}, dropout {arch.get('dropout')}; softmax over "
        f"{info['alphabet_size']} characters + blank",
        f"- {int(extra.get('parameters', 0)):,} parameters",
        f"- alphabet: `{''.join(info['alphabet'])}`",
        "- preprocessing (`recognition.image.preprocess`, the same at training and serving): grey, ink 1 / "
        "paper 0 with contrast stretch, blank margins trimmed, height scaled with aspect kept, mirrored so "
        "the model reads right to left",
        "- text convention: NFC, presentation forms folded, bidi marks dropped, harakat dropped, tatweel kept",
        "",
        "## Training",
        "",
        *_describe_data(info.get("training_data", "{}")),
        "- real lines: OpenITI gold-standard OCR data (five printed classical Arabic books; "
        "github.com/OpenArabic/OCR_GS_Data), the book below held out whole for validation",
        "- synthetic lines: `training.synth` with 39 Debian Arabic book faces, scan-like degradation, "
        "harakat drawn but not transcribed; text from the training books' transcriptions and `datasets/corpus`",
        f"- {state.get('epoch', '?')} epochs, best at epoch {state.get('best_epoch', '?')}, "
        f"{state.get('step', '?')} steps of batch {state.get('args', {}).get('batch_size', '?')}, "
        f"Adam with LR halving on plateau, on-the-fly augmentation",
        f"- training time {float(extra.get('training_seconds', 0)) / 60:.0f} minutes on "
        f"{extra.get('training_machine', '?')} (CPU only)",
        f"- validation CER on the held-out book ({held_out}) at the best epoch: {_pct(info.get('validation_cer'))}",
        "",
        "![training curves](arabic-crnn-v1-curves.png)",
        "",
    ]
    if evaluation:
        lines += ["## Accuracy per book (`training.evaluate`)", "",
                  "Only the held-out book measures generalisation (leave-one-book-out); the other books were "
                  "seen in training and are listed to show the fit, not the accuracy to expect.", "",
                  "| book | lines | CER | WER | CER without harakat/tatweel | seen in training |",
                  "|---|---:|---:|---:|---:|---|"]
        for source, row in evaluation["results"].items():
            seen = "no (held out)" if held_out in source else ("-" if source == "all" else "yes")
            lines.append(f"| {source} | {row['lines']} | {_pct(row['cer'])} | {_pct(row['wer'])} | "
                         f"{_pct(row['cer_no_harakat_tatweel'])} | {seen} |")
        confusions = evaluation["results"]["all"].get("confusions", [])[:12]
        if confusions:
            lines += ["", "Most frequent confusions (reference -> recognised): " + ", ".join(
                f"`{c['reference'] or '∅'}`->`{c['hypothesis'] or '∅'}` ({c['count']})" for c in confusions)]
        lines.append("")
    if bench:
        lines += ["## Speed and accuracy against Tesseract (`bench.recognizer`, same lines, same run)", "",
                  f"Machine: {bench['machine']['cpu']}, {bench['machine']['cores']} cores. "
                  f"{bench['lines']} lines of {', '.join(bench['sources'])}, median width "
                  f"{bench['median_width_px']} px.", "",
                  "| system | batch | threads | median ms/line | p90 ms | CER | x Tesseract speed |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row in bench["rows"]:
            lines.append(f"| {row['label']} | {row['batch']} | {row['threads']} | {row['median_ms']:.2f} | "
                         f"{row['p90_ms']:.2f} | {_pct(row['cer'])} | {row.get('speedup_vs_tesseract') or 'n/a'} |")
        lines.append("")
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="the exported .onnx (its .json and .keras beside it)")
    parser.add_argument("--run", help="the training run folder")
    parser.add_argument("--evaluation", help="evaluation.json from training.evaluate")
    parser.add_argument("--bench", help="recognizer.json from bench.recognizer")
    parser.add_argument("--held-out", default="", help="the held-out book's name")
    parser.add_argument("--notes", help="a Markdown file appended as is (limits, caveats)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    load = lambda p: json.loads(Path(p).read_text(encoding="utf-8")) if p else None  # noqa: E731
    text = build(Path(args.model), Path(args.run) if args.run else None, load(args.evaluation), load(args.bench),
                 args.held_out, Path(args.notes).read_text(encoding="utf-8") if args.notes else "")
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
