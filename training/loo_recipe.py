"""What every fold of a leave-one-book-out series shares, and the checks that keep the folds honest.

A fold's figure is its model's CER on the book it never saw. For the five figures to be one
measurement, every fold is trained by the same recipe (the same ``training.train`` arguments, the
same number and seed of synthetic lines, the same extra corpus, the same books), and nothing about
the held-out book may steer its own fold: the number of epochs is fixed before the run, the learning
rate follows a cosine schedule over them (not the plateau schedule, which halves it when the
validation book, i.e. the held-out book, stops improving), early stopping cannot fire, and the model
kept is the last epoch's. A starting model (``--init-from``) must not have seen the held-out book.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from recognition.line_data import matches_source

from .corpus import corpus_name, iter_text_files

# Set by leave_one_out for each fold, never by the recipe.
SET_PER_FOLD = {"data": "--data", "synth": "--synth", "out": "--out", "threads": "--threads",
                "session_minutes": "--session-minutes"}
_MARK = "\0set-per-fold"

log = logging.getLogger("training.leave_one_out")


class RecipeError(ValueError):
    """Train arguments that would not give an honest leave-one-book-out figure."""


def parse_train_args(train_args: list[str]) -> argparse.Namespace:
    """``training.train``'s reading of the arguments, refused where a fold would not be fixed in advance."""
    from .train import build_parser

    parser = build_parser()
    parser.prog = "training arguments after -- (python -m training.train)"
    parser.set_defaults(epochs=None)  # train's default would fix the length by accident, not by the recipe
    args = parser.parse_args(["--data", _MARK, "--out", _MARK, *train_args])
    unset = {"data": [_MARK], "out": _MARK, "synth": [], "threads": 0, "session_minutes": None}
    taken = [SET_PER_FOLD[name] for name, value in unset.items() if getattr(args, name) != value]
    if taken:
        raise RecipeError(f"{', '.join(taken)} among the train arguments: leave_one_out sets them for each fold "
                          "(use its own --threads and --minutes-per-session)")
    if args.epochs is None:
        raise RecipeError("give --epochs among the train arguments: every fold runs that many, fixed before the run")
    if args.max_minutes is not None:
        raise RecipeError("--max-minutes among the train arguments: a time budget makes a fold's length (and its "
                          "cosine schedule) depend on the machine and its load; fix --epochs instead "
                          "(--minutes-per-session ends a session without changing the recipe)")
    if args.lr_schedule != "cosine":
        raise RecipeError("add --lr-schedule cosine: the plateau schedule halves the learning rate when the "
                          "validation book stops improving, and a fold's validation book is its held-out book")
    if args.patience < args.epochs:
        raise RecipeError(f"--patience {args.patience} is below --epochs {args.epochs}: early stopping watches the "
                          f"held-out book; add --patience {args.epochs} so that every fold runs its epochs")
    return args


def model_height(args: argparse.Namespace) -> int:
    """The input height the recipe's model reads (lines are preprocessed to it)."""
    from .model import PRESETS

    if args.preset:
        return PRESETS[args.preset].height
    if args.init_from:
        from .finetune import base_config

        return base_config(args.init_from).height
    return PRESETS["accurate"].height


@dataclass
class StartingData:
    """What a starting model was trained on, as far as it is recorded beside it."""
    real: list[str] | None                   # real line sources trained or validated on; None: not all recorded
    synthetic: list[tuple[str, dict | None]]  # each synthetic set: its name, its synth.json where found


def recorded_data(keras_path: str | Path) -> StartingData | None:
    """What a checkpoint was trained or validated on, as recorded beside it: an exported model's
    ``NAME.json``, or a run's ``state.json`` (its data manifests). None when nothing says."""
    path = Path(keras_path)
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        try:
            data = json.loads(json.loads(sidecar.read_text(encoding="utf-8")).get("training_data") or "{}")
        except ValueError:
            return None
        return StartingData(_recorded_sources(data.get("real")),
                            [(name, None) for folder in data.get("synthetic", [])
                             for name in (_recorded_sources([folder]) or [str(folder.get("folder"))])])
    state = path.parent / "state.json"
    if state.exists():
        from .shards import read_manifest

        args = json.loads(state.read_text(encoding="utf-8")).get("args", {})
        try:
            real = [source for folder in args.get("data", [])
                    for split in read_manifest(Path(folder))["splits"].values() for source in split["sources"]]
        except FileNotFoundError:
            real = None
        return StartingData(real, [set_ for folder in args.get("synth", []) for set_ in _synthetic_sets(Path(folder))])
    return None


def _recorded_sources(folders: list | None) -> list[str] | None:
    """The sources of an exported model's data folders; None where a folder was recorded without its
    splits (its manifest was missing at export): what it held is not known."""
    if folders is None:
        return None
    sources = []
    for folder in folders:
        splits = [split for split in folder.values() if isinstance(split, dict)]
        if not splits:
            return None
        sources += [source for split in splits for source in split]
    return sources


def _synthetic_sets(arrays: Path) -> list[tuple[str, dict | None]]:
    """A run's preprocessed synthetic folder: the line folders it was made from, each with its
    ``synth.json`` (which corpus, which exclusions) where it is still there."""
    from .shards import read_manifest

    try:
        inputs = read_manifest(arrays).get("sources", [])
    except FileNotFoundError:
        return [(str(arrays), None)]
    records = []
    for folder in inputs or [str(arrays)]:
        record = Path(folder) / "synth.json"
        records.append((folder, json.loads(record.read_text(encoding="utf-8")) if record.exists() else None))
    return records


def check_init_from(args: argparse.Namespace, book: str) -> None:
    """Refuse a starting model that trained (or chose its epochs) on the held-out book, or does not say;
    refuse one whose synthetic lines were drawn from the book's text files, and warn where that is not
    known (an exported model does not record its synthetic lines' corpus)."""
    if not args.init_from:
        return
    data = recorded_data(args.init_from)
    if data is None or data.real is None:
        raise RecipeError(f"--init-from {args.init_from}: nothing beside it says (or not for all its data) which "
                          "books it was trained on (NAME.json's training_data, a run's state.json and its data "
                          "manifests); a fold must not start from a model that saw its book")
    seen = [s for s in data.real if matches_source(s, [book])]
    if seen:
        raise RecipeError(f"--init-from {args.init_from} was trained or validated on {', '.join(seen)}: the fold "
                          f"holding out {book} would start from a model that read it")
    for name, record in data.synthetic:
        drawn = _corpus_files_of(book, record) if record else None
        if drawn:
            raise RecipeError(f"--init-from {args.init_from} trained on synthetic lines ({name}) drawn from "
                              f"{', '.join(drawn[:3])}{' ...' if len(drawn) > 3 else ''}: the fold holding out "
                              f"{book} would start from a model that read its text")
        if drawn is None:
            log.warning("--init-from %s trained on synthetic lines (%s) whose corpus %s: if it held %s's text, "
                        "that fold's figure is optimistic", args.init_from, name,
                        "is not recorded beside it" if record is None else "is not all on this machine", book)


def _corpus_files_of(book: str, record: dict) -> list[str] | None:
    """The text files of ``book`` that a synthetic line set's recorded corpus drew from (after its
    exclusions); None when a corpus path of the record is not here to look into."""
    corpus = record.get("corpus", [])
    if not all(Path(c).exists() for c in corpus):
        return None
    return [corpus_name(f, Path(root)) for root in corpus
            for f in iter_text_files([root], record.get("exclude_corpus", []))
            if matches_source(corpus_name(f, Path(root)), [book])]


def corpus_fingerprint(paths: list[str]) -> str:
    """SHA-256 (16 hex digits) of the text files' names and contents: the same corpus on another machine,
    under another path, compares equal."""
    digest = hashlib.sha256()
    for path in paths:
        root = Path(path)
        for file in iter_text_files([path]):
            name = file.relative_to(root).as_posix() if root.is_dir() else file.name
            digest.update(name.encode("utf-8") + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class Recipe:
    train_args: list[str]    # training.train's arguments, applied to every fold as they are
    synth_lines: int         # synthetic lines rendered for each fold (0: none)
    synth_seed: int
    corpus: list[str]        # extra text for the synthetic lines, beside the other books' transcriptions
    corpus_sha256: str       # of those files, so that a copy elsewhere compares equal
    books: dict[str, int]    # every book of the series, with its line count

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        return cls(**data)

    def key(self) -> str:
        """What makes two recipes the same one: everything but where the corpus lies (its fingerprint
        stands for it), so that a series moved to another checkout or machine is still one recipe."""
        return json.dumps({k: v for k, v in self.to_dict().items() if k != "corpus"}, sort_keys=True,
                          ensure_ascii=False)

    def differences(self, other: Recipe) -> list[str]:
        """What differs, said as 'NAME: OTHER's value, then this one's'."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{name}: {theirs[name]!r} there, {mine[name]!r} here" for name in mine
                if mine[name] != theirs[name] and not (name == "corpus" and mine["corpus_sha256"]
                                                       == theirs["corpus_sha256"])]
