"""Compare candidate recipes for the next model on their held-out book: a table, JSON and the validation curves.

    python -m bench.candidates bench/results/loo-gpu/IbnQutayba bench/results/candidates/ema-IbnQutayba \\
        --out bench/results/candidates

Each folder is one trained fold's kept records (``training.loo_finish``'s ``run.json``, ``history.csv``,
``evaluation.json`` and, where kept, ``synth.json``); the first is the baseline the others are compared with.
The held-out book is the run's ``--val-source``. Reported per candidate: what its recipe changed (training
arguments and synthetic-line options that differ from the baseline's, the machine's own left out), the
held-out book's CER (also with the spaces next to punctuation set aside, where the evaluation has it) and WER (the
exported float model, greedy, last epoch), the share of character errors in the
lowest-confidence 10% of lines and the best possible share, and the last epoch's validation CER of the weights as
validated (the average, for ``--ema`` runs) and as trained. Writes ``candidates.json`` and ``candidates.png``.
A folder with ``ensemble.json`` is an ensemble of other folds of one recipe (``training.ensemble``; see
``read_ensemble``), compared as the rest.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from recognition.line_data import matches_source
from training.loo_finish import fold_recipe

SYNTH_KEYS = ("lines", "seed", "eulogy_ligature_rate", "spaced_punctuation_rate", "hamza_omission_rate")


def read_ensemble(folder: Path) -> dict:
    """A folder with ``ensemble.json`` (``{"members": [member folders, relative to this one's parent]}``) and the
    merged model's ``evaluation.json``: its recipe is its members' (which must differ in the seed alone), with the
    seeds joined and ``ensemble`` the member count; it has no validation curve of its own."""
    names = json.loads((folder / "ensemble.json").read_text(encoding="utf-8"))["members"]
    members = [read_candidate(folder.parent / name) for name in names]
    recipes = [{k: v for k, v in m["recipe"].items() if k != "seed"} for m in members]
    if any(r != recipes[0] for r in recipes[1:]) or len({m["book"] for m in members}) != 1:
        raise SystemExit(f"{folder}: its members' recipes differ in more than the seed; not one recipe's ensemble")
    evaluation = json.loads((folder / "evaluation.json").read_text(encoding="utf-8"))
    book = members[0]["book"]
    result, confidence = _held_out(folder, evaluation, book)
    recipe = {**recipes[0], "seed": "+".join(str(m["recipe"].get("seed")) for m in members), "ensemble": len(members)}
    return {"name": f"{folder.parent.name}/{folder.name}", "folder": str(folder), "book": book, "recipe": recipe,
            "machine": members[0]["machine"], "epochs": members[0]["epochs"], "members": names,
            "cer": result["cer"], "wer": result["wer"],
            "cer_no_punctuation_spacing": result.get("cer_no_punctuation_spacing"),
            "error_share_lowest_10pct": confidence["error_share_lowest_10pct"],
            "error_share_best_possible": confidence["error_share_best_possible"],
            "val_cer_last": None, "val_cer_trained_last": None, "curve": [], "curve_trained": []}


def _held_out(folder: Path, evaluation: dict, book: str) -> tuple[dict, dict]:
    sources = [s for s in evaluation["results"] if s != "all" and matches_source(s, [book])]
    if len(sources) != 1:  # the first of several would be another book's figure
        raise SystemExit(f"{folder}: {len(sources)} evaluated sources match its held-out book {book!r}: {sources}")
    return evaluation["results"][sources[0]], evaluation["confidence"][sources[0]]


def read_candidate(folder: Path) -> dict:
    if (folder / "ensemble.json").exists():
        return read_ensemble(folder)
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    with (folder / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    evaluation = json.loads((folder / "evaluation.json").read_text(encoding="utf-8"))
    synth_path = folder / "synth.json"
    synth = json.loads(synth_path.read_text(encoding="utf-8")) if synth_path.exists() else {}
    book = run["args"]["val_source"]
    result, confidence = _held_out(folder, evaluation, book)
    recipe = fold_recipe(run["args"])  # what it learnt from, as training.loo_finish counts it
    # A rate a record does not name was not an option yet: 0. The lines and seed of a series that kept no
    # synth.json (before it was kept) are unknown: None.
    recipe.update({f"synth_{k}": synth.get(k, 0) if k.endswith("_rate") else synth.get(k) for k in SYNTH_KEYS})
    last = history[-1]
    return {"name": f"{folder.parent.name}/{folder.name}", "folder": str(folder), "book": book, "recipe": recipe,
            "machine": run.get("machine"), "epochs": len(history),
            "cer": result["cer"], "wer": result["wer"],
            "cer_no_punctuation_spacing": result.get("cer_no_punctuation_spacing"),
            "error_share_lowest_10pct": confidence["error_share_lowest_10pct"],
            "error_share_best_possible": confidence["error_share_best_possible"],
            "val_cer_last": float(last["val_cer"]),
            "val_cer_trained_last": float(last["val_cer_trained"]) if last.get("val_cer_trained") else None,
            "curve": [float(h["val_cer"]) for h in history],
            "curve_trained": [float(h["val_cer_trained"]) for h in history if h.get("val_cer_trained")]}


def changes(candidate: dict, baseline: dict) -> str:
    diff = []
    for k, v in candidate["recipe"].items():
        was = baseline["recipe"].get(k)
        if k == "ensemble":  # a single model is an ensemble of one, whatever its record says
            diff.append(f"ensemble of {v}")
        elif v is not None and was is None:
            diff.append(f"{k}={v} (baseline's unknown)")
        elif v != was:
            diff.append(f"{k}={v}")
    return ", ".join(diff) or "(the baseline's recipe)"


def table(candidates: list[dict]) -> str:
    base = candidates[0]
    header = ["candidate", "changes", "CER", "x baseline", "CER, no spaces at marks", "WER", "lowest 10%",
              "best possible", "last val (trained)"]
    rows = []
    for c in candidates:
        trained = f" ({100 * c['val_cer_trained_last']:.2f}%)" if c["val_cer_trained_last"] is not None else ""
        last = "-" if c["val_cer_last"] is None else f"{100 * c['val_cer_last']:.2f}%{trained}"
        tight = c["cer_no_punctuation_spacing"]
        rows.append([c["name"], "baseline" if c is base else changes(c, base), f"{100 * c['cer']:.2f}%",
                     f"{c['cer'] / base['cer']:.2f}", "not measured" if tight is None else f"{100 * tight:.2f}%",
                     f"{100 * c['wer']:.2f}%",
                     f"{100 * c['error_share_lowest_10pct']:.1f}%", f"{100 * c['error_share_best_possible']:.1f}%",
                     last])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot(candidates: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for c in candidates:
        if not c["curve"]:  # an ensemble: no validation run of its own
            continue
        epochs = range(1, len(c["curve"]) + 1)
        (line,) = ax.plot(epochs, [100 * v for v in c["curve"]], marker="o", ms=3, label=c["name"])
        if c["curve_trained"]:
            ax.plot(epochs, [100 * v for v in c["curve_trained"]], ls="--", color=line.get_color(), alpha=0.6,
                    label=f"{c['name']} (weights as trained)")
    ax.set_ylim(0, 3 * max(c["val_cer_last"] or 0 for c in candidates) * 100 or None)
    ax.axhline(2.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation CER on {candidates[0]['book']} (%)")
    ax.set_title("Candidate recipes, held-out book (dotted: the 2.5% target)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.candidates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="kept fold records, the baseline first")
    parser.add_argument("--out", required=True, help="folder for candidates.json and candidates.png")
    args = parser.parse_args(argv)
    candidates = [read_candidate(Path(f)) for f in args.folders]
    books = {c["book"] for c in candidates}
    if len(books) > 1:
        parser.error(f"the candidates hold out different books ({', '.join(sorted(books))}): not comparable")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(table(candidates))
    (out / "candidates.json").write_text(json.dumps(candidates, ensure_ascii=False, indent=1), encoding="utf-8")
    plot(candidates, out / "candidates.png")
    print(f"wrote {out / 'candidates.json'} and {out / 'candidates.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
