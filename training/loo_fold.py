"""One fold of a leave-one-book-out series: its folder, and the record of what was done in it.

``OUT/BOOK/`` holds everything of the fold that holds BOOK out:

    real/           the real lines as arrays, BOOK as ``val``, the other books as ``train``
    synth/          its synthetic lines (PNG + .gt.txt), drawn from text without BOOK's
    synth-arrays/   those lines as arrays
    run/            the training run (``training.train``: last.keras, state.json, history.csv, ...)
    model/          the exported ``loo-BOOK.onnx`` (the last epoch's model)
    evaluation/     ``training.evaluate`` of that model on every book
    fold.json       this record: each step, when and on which machine it ran, for how long, under which
                    recipe; the recipe its steps still to do use (``current_recipe``: the last one run,
                    or the one ``--force`` put in its place); the held-out figure once evaluated

(Each folder is named after the step that makes it.)

A step counts as done only once its record says so, written after it finished: a step cut short
(a killed process) is done again; training resumes from its own last checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .loo_recipe import Recipe
from .machine import machine_description

STEPS = ("real", "synth", "synth-arrays", "train", "export", "evaluate")
RECORD = "fold.json"


def write_json(path: Path, data) -> None:
    """Write beside and then replace: a process killed while writing leaves the old file whole, never
    half of the new one (the records are what the next session goes on from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def steps_for(recipe: Recipe) -> tuple[str, ...]:
    return STEPS if recipe.synth_lines else tuple(s for s in STEPS if not s.startswith("synth"))


@dataclass
class Fold:
    book: str
    folder: Path
    record: dict = field(init=False)

    def __post_init__(self) -> None:
        path = self.folder / RECORD
        self.record = (json.loads(path.read_text(encoding="utf-8")) if path.exists()
                       else {"book": self.book, "recipes": [], "steps": {}})

    # -- where things are ---------------------------------------------------------
    @property
    def real(self) -> Path:
        return self.folder / "real"

    @property
    def synth_lines(self) -> Path:
        return self.folder / "synth"

    @property
    def synth_arrays(self) -> Path:
        return self.folder / "synth-arrays"

    @property
    def run(self) -> Path:
        return self.folder / "run"

    @property
    def model(self) -> Path:
        return self.folder / "model" / f"loo-{self.book}.onnx"

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation" / "evaluation.json"

    # -- the record -----------------------------------------------------------------
    def save(self) -> None:
        write_json(self.folder / RECORD, self.record)

    @property
    def started(self) -> bool:
        return bool(self.record["steps"])

    def done(self, step: str) -> bool:
        return bool(self.record["steps"].get(step, {}).get("done"))

    def _recipe_index(self, recipe: Recipe) -> int:
        """The recipe's place in the record, added if new; the same recipe with its corpus elsewhere
        (another checkout or machine) is the one already there."""
        keys = [Recipe.from_dict(r).key() for r in self.record["recipes"]]
        if recipe.key() not in keys:
            self.record["recipes"].append(recipe.to_dict())
            return len(keys)
        return keys.index(recipe.key())

    def current_recipe(self) -> Recipe | None:
        """The recipe the fold's steps still to do use: its last session's, or the one --force put in its
        place (None before the first step)."""
        if not self.record["recipes"]:
            return None
        return Recipe.from_dict(self.record["recipes"][self.record.get("current_recipe", -1)])

    def used_recipes(self) -> list[Recipe]:
        """The recipes its recorded steps ran under."""
        used = sorted({s["recipe"] for entry in self.record["steps"].values() for s in entry["sessions"]})
        return [Recipe.from_dict(self.record["recipes"][i]) for i in used]

    def replace_recipe(self, recipe: Recipe) -> None:
        """--force: the steps still to do use ``recipe``; what was done stays recorded under its own."""
        index = self._recipe_index(recipe)
        self.record["current_recipe"] = index
        self.record.setdefault("recipe_replaced", []).append({"when": now(), "by": index})
        self.save()

    def note(self, step: str, seconds: float, recipe: Recipe, done: bool = True, **facts) -> None:
        """Record one run of ``step`` (a training session, or a whole data step) and save the record."""
        index = self._recipe_index(recipe)
        self.record["current_recipe"] = index
        entry = self.record["steps"].setdefault(step, {"sessions": []})
        entry["sessions"].append({"finished": now(), "minutes": round(seconds / 60, 2),
                                  "machine": machine_description(), "recipe": index, **facts})
        entry["done"] = done
        self.save()

    def undo(self, step: str) -> None:
        """Count ``step`` as not done (its output was found wrong later): the next session does it again."""
        if step in self.record["steps"]:
            self.record["steps"][step]["done"] = False
            self.save()

    def held_out(self) -> dict | None:
        """The fold's figure: its model's CER on the held-out book (None until evaluated)."""
        return self.record.get("held_out")

    # -- progress -------------------------------------------------------------------
    def training_state(self) -> dict | None:
        path = self.run / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def epochs_done(self) -> int:
        state = self.training_state()
        return state["epoch"] if state else 0

    def last_epoch_seconds(self) -> float:
        """How long the training run's last epoch took (0 before the first): the next one's likely length."""
        history = (self.training_state() or {}).get("history", [])
        if not history:
            return 0.0
        return history[-1]["seconds"] - (history[-2]["seconds"] if len(history) > 1 else 0.0)

    def minutes(self) -> float:
        """Minutes spent on the fold: every recorded step, and the training run's own clock where a
        session was cut off before it could be recorded."""
        recorded = {step: sum(s["minutes"] for s in entry["sessions"]) for step, entry in self.record["steps"].items()}
        state = self.training_state()
        if state:
            recorded["train"] = max(recorded.get("train", 0.0), state.get("seconds", 0.0) / 60)
        return sum(recorded.values())

    def training_minutes(self) -> float:
        state = self.training_state()
        return state.get("seconds", 0.0) / 60 if state else 0.0

    def machines(self) -> list[str]:
        return sorted({s["machine"] for entry in self.record["steps"].values() for s in entry["sessions"]})

    def next_step(self, recipe: Recipe) -> str | None:
        return next((step for step in steps_for(recipe) if not self.done(step)), None)
