"""Sharded NumPy storage of preprocessed lines.

One shard is an ``.npz`` holding every line image of the shard side by side
(``images``: height x total width, uint8 ink 0..255) with their ``widths``, and
the logical ``texts``, ``names`` and ``sources``. Labels are not stored: the
alphabet is the trained model's, so ``training.train`` encodes them
(``training.labels``); shards from older versions that hold labels still read.
Side by side storage keeps a shard one dense array instead of thousands of
small objects, and slicing it back is free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recognition.hashing import file_sha256

MANIFEST = "manifest.json"


@dataclass
class Line:
    image: np.ndarray   # height x width uint8
    text: str           # logical order, normalised
    name: str
    source: str


class ShardWriter:
    def __init__(self, out: Path, split: str, max_pixels: int = 48 * 1_000_000):
        self.out, self.split, self.max_pixels = out, split, max_pixels
        self.buffer: list[Line] = []
        self.pixels = 0
        self.files: list[dict] = []

    def add(self, line: Line) -> None:
        self.buffer.append(line)
        self.pixels += line.image.size
        if self.pixels >= self.max_pixels:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        path = self.out / f"{self.split}-{len(self.files):04d}.npz"
        lines = self.buffer
        np.savez(
            path,
            images=np.concatenate([l.image for l in lines], axis=1),
            widths=np.array([l.image.shape[1] for l in lines], np.int32),
            texts=np.array([l.text for l in lines]),
            names=np.array([l.name for l in lines]),
            sources=np.array([l.source for l in lines]),
        )
        self.files.append({"file": path.name, "lines": len(lines), "sha256": file_sha256(path)})
        self.buffer, self.pixels = [], 0


def read_shard(path: Path) -> list[Line]:
    with np.load(path) as data:
        images, widths = data["images"], data["widths"]
        texts, names, sources = data["texts"], data["names"], data["sources"]
    x_ends = np.cumsum(widths)
    return [Line(images[:, x_end - w: x_end], str(t), str(nm), str(s))
            for w, x_end, t, nm, s in zip(widths, x_ends, texts, names, sources)]


def read_manifest(directory: Path) -> dict:
    return json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))


def read_split(directory: Path, split: str) -> list[Line]:
    manifest = read_manifest(directory)
    lines: list[Line] = []
    for entry in manifest["splits"].get(split, {}).get("shards", []):
        lines.extend(read_shard(Path(directory) / entry["file"]))
    return lines
