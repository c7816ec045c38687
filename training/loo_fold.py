"""One fold of a leave-one-book-out series: its folder, and the record of what was done in it.

``OUT/BOOK/`` holds everything of the fold that holds BOOK out:

    real/           the real lines as arrays, BOOK as ``val``, the other books as ``train``
    synth-lines/    its synthetic lines (PNG + .gt.txt), drawn from text without BOOK's
    synth/          those lines as arrays
    run/            the training run (``training.train``: last.keras, state.json, history.csv, ...)
    model/          the exported ``loo-BOOK.onnx`` (the last epoch's model)
    evaluation/     ``training.evaluate`` of that model on every book
    fold.json       this record: each step, when and on which machine it ran, for how long, under which
                    recipe; the held-out figure once evaluated

A step counts as done only once its record says so, written after it finished: a step cut short
(a killed process) is done again; training resumes from its own last checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .loo_recipe import Recipe

STEPS = ("real", "synth", "synth-arrays", "train", "export", "evaluate")
RECORD = "fold.json"


def machine_description() -> str:
    """The CPU model and cores (where the minutes were spent), the system and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"


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
        return self.folder / "synth-lines"

    @property
    def synth_arrays(self) -> Path:
        return self.folder / "synth"

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
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (RECORD + ".tmp")
        tmp.write_text(json.dumps(self.record, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(self.folder / RECORD)

    @property
    def started(self) -> bool:
        return bool(self.record["steps"])

    def done(self, step: str) -> bool:
        return bool(self.record["steps"].get(step, {}).get("done"))

    def recipes(self) -> list[Recipe]:
        return [Recipe.from_dict(r) for r in self.record["recipes"]]

    def note(self, step: str, seconds: float, recipe: Recipe, done: bool = True, **facts) -> None:
        """Record one run of ``step`` (a training session, or a whole data step) and save the record."""
        if recipe.to_dict() not in self.record["recipes"]:
            self.record["recipes"].append(recipe.to_dict())
        entry = self.record["steps"].setdefault(step, {"sessions": []})
        entry["sessions"].append({"finished": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "minutes": round(seconds / 60, 2), "machine": machine_description(),
                                  "recipe": self.record["recipes"].index(recipe.to_dict()), **facts})
        entry["done"] = done
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
