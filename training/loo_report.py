"""What a leave-one-book-out series has done: the status of each fold, and the summary of the finished ones.

The summary (``summary.json``, ``loo-cer.png``, a printed table) gives each finished fold's CER on its
held-out book, their mean (unweighted: one figure per book, as ``training.model_card`` shows it) and
the ``training.model_card --leave-one-out`` arguments that put them into a model card.
"""

from __future__ import annotations

from pathlib import Path

from .formatting import percent
from .loo_fold import Fold, steps_for, write_json
from .loo_recipe import Recipe, parse_train_args


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _epochs(fold: Fold, recipe: Recipe) -> str:
    state = fold.training_state()
    planned = (state or {}).get("args", {}).get("epochs")
    if planned is None:
        planned = parse_train_args(recipe.train_args).epochs
    return f"{fold.epochs_done()}/{planned}"


def status_table(folds: list[Fold], recipe: Recipe) -> str:
    rows = []
    steps = steps_for(recipe)
    for fold in folds:
        step, done = fold.next_step(recipe), sum(fold.done(s) for s in steps)
        progress = ("done" if step is None else f"next: {step}" if fold.started else "not started")
        held_out = fold.held_out()
        rows.append([fold.book, str(recipe.books.get(fold.book, "?")), f"{done}/{len(steps)}, {progress}",
                     _epochs(fold, recipe), f"{fold.minutes():.1f}", percent(held_out["cer"]) if held_out else "",
                     "; ".join(fold.machines())])
    return format_table(["held-out book", "lines", "steps done", "epochs", "minutes", "held-out CER", "machine"],
                        rows)


def summarise(out: Path, folds: list[Fold]) -> dict | None:
    """summary.json and loo-cer.png from the evaluated folds (None when there is none yet)."""
    finished = [f for f in folds if f.held_out()]
    if not finished:
        return None
    rows = []
    recipes = set()
    for fold in finished:
        state = fold.training_state() or {}
        used = fold.used_recipes()
        recipes |= {r.key() for r in used}
        rows.append({"book": fold.book, **fold.held_out(), "epochs": state.get("epoch"), "steps": state.get("step"),
                     "training_minutes": round(fold.training_minutes(), 1), "minutes": round(fold.minutes(), 1),
                     "machines": fold.machines(), "evaluation": str(fold.evaluation),
                     "corpus_check": corpus_check(fold), "recipes": [r.to_dict() for r in used]})
    summary = {
        "folds_finished": len(finished), "folds": len(folds),
        "mean_cer": round(sum(r["cer"] for r in rows) / len(rows), 5),
        "mixed_recipes": len(recipes) > 1,
        "model_card_arguments": ["--leave-one-out", *(f"{r['book']}={r['evaluation']}" for r in rows)],
        "per_fold": rows,
    }
    write_json(out / "summary.json", summary)
    plot(rows, summary["mean_cer"], len(folds), out / "loo-cer.png")
    return summary


def corpus_check(fold: Fold) -> list[int] | None:
    """[held-out lines sharing a run of words with its synthetic lines' corpus, lines long enough to
    tell] as its synth step recorded them; None for a fold without synthetic lines."""
    sessions = fold.record["steps"].get("synth", {}).get("sessions", [])
    return sessions[-1].get("held_out_lines_sharing_a_run") if sessions else None


def format_summary(summary: dict, out: Path) -> str:
    rows = [[r["book"], str(r["lines"]), percent(r["cer"]), percent(r["wer"]), percent(r["trained_books_cer"]),
             str(r["epochs"]), f"{r['training_minutes']:.0f}"] for r in summary["per_fold"]]
    table = format_table(["held-out book", "lines", "CER", "WER", "CER on its training books", "epochs",
                          "training minutes"], rows)
    lines = [table, "", f"mean held-out CER {percent(summary['mean_cer'])} over {summary['folds_finished']} of "
                        f"{summary['folds']} folds"]
    unchecked = [r["book"] for r in summary["per_fold"] if r["corpus_check"] and not r["corpus_check"][1]]
    if unchecked:
        lines.append(f"WARNING: not checked whether the synthetic lines' corpus held the text of {', '.join(unchecked)} "
                     "(no line of the book is long enough to tell): make sure it did not")
    if summary["mixed_recipes"]:
        lines.append("WARNING: the folds were not all trained by one recipe (--force was used): see each fold's "
                     "recipes in summary.json; the mean is of different measurements")
    lines += [f"wrote {out / 'summary.json'} and {out / 'loo-cer.png'}",
              "for the model card: python -m training.model_card MODEL.onnx ... "
              + " ".join(summary["model_card_arguments"])]
    return "\n".join(lines)


def plot(rows: list[dict], mean: float, folds: int, path: Path) -> None:
    """One bar per held-out book, its CER on it; the mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(rows) + 2), 4.2))
    cers = [100 * r["cer"] for r in rows]
    bars = ax.bar(range(len(rows)), cers, color="#4a7ab5")
    for bar, cer in zip(bars, cers):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{cer:.2f}%", ha="center", va="bottom",
                fontsize=8)
    ax.axhline(100 * mean, color="#c0392b", ls="--", lw=1.2, label=f"mean {100 * mean:.2f}%")
    ax.set_xticks(range(len(rows)), [r["book"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("CER on the held-out book (%)")
    ax.set_title(f"Leave-one-book-out: {len(rows)} of {folds} folds", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

