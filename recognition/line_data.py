"""Reading line datasets: folders of image + transcription pairs, or manifests.

Supported layouts (kraken, Calamari, tesstrain and OpenITI ground truth):

* a folder tree with ``NAME.png`` (or .jpg/.tif/...) beside ``NAME.gt.txt``;
* a TSV or CSV manifest, one ``path<TAB>text`` (or ``path,text``) per line,
  paths relative to the manifest.

Each folder that directly holds pairs is one *source* (a book), named by its
path relative to the argument's parent, so ``openiti-gs`` yields sources like
``openiti-gs/book_IbnAthir.Kamil/7_final``. Splits are by source.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .image import IMAGE_SUFFIXES


@dataclass(frozen=True)
class LineSample:
    image_path: Path
    text: str  # raw transcription, not yet normalised
    source: str


@dataclass
class SkipReport:
    """Why lines were left out, with a few examples of each reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, what: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(what)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "examples": self.examples}


def _source_name(folder: Path, root: Path) -> str:
    base = root.parent if root.is_dir() else root.parent.parent
    try:
        return folder.relative_to(base).as_posix()
    except ValueError:
        return folder.as_posix()


def iter_folder(root: Path, report: SkipReport) -> Iterator[LineSample]:
    for gt in sorted(root.rglob("*.gt.txt")):
        stem = gt.name[: -len(".gt.txt")]
        image = next((gt.with_name(stem + s) for s in IMAGE_SUFFIXES if gt.with_name(stem + s).exists()), None)
        if image is None:
            report.skip("missing image", str(gt))
            continue
        yield LineSample(image, gt.read_text(encoding="utf-8"), _source_name(gt.parent, root))
    for image in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if image.name == "contact-sheet.png":  # synth's preview, not a line
            continue
        if not image.with_name(image.stem + ".gt.txt").exists():
            report.skip("missing transcription", str(image))


def iter_manifest(manifest: Path, report: SkipReport) -> Iterator[LineSample]:
    delimiter = "\t" if manifest.suffix.lower() in (".tsv", ".txt") else ","
    with manifest.open(encoding="utf-8", newline="") as f:
        for row_number, row in enumerate(csv.reader(f, delimiter=delimiter), 1):
            if not row or (row_number == 1 and row[0].lower() in ("path", "image", "file")):
                continue
            if len(row) < 2:
                report.skip("manifest row without text", f"{manifest}:{row_number}")
                continue
            path = (manifest.parent / row[0]).resolve()
            if not path.exists():
                report.skip("missing image", f"{manifest}:{row_number} {row[0]}")
                continue
            yield LineSample(path, delimiter.join(row[1:]), manifest.stem)


def iter_samples(sources: list[str], report: SkipReport) -> Iterator[LineSample]:
    for src in map(Path, sources):
        if src.is_dir():
            yield from iter_folder(src, report)
        elif src.is_file():
            yield from iter_manifest(src, report)
        else:
            raise FileNotFoundError(f"no such dataset folder or manifest: {src}")


def matches_source(source: str, names: list[str]) -> bool:
    """``--val-source Kamil`` matches ``openiti-gs/book_IbnAthir.Kamil/7_final``."""
    parts = source.split("/")
    return any(name == source or name in parts or any(name in p for p in parts) for name in names)
