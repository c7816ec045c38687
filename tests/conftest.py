"""Shared fixtures: rendered line datasets and a tiny model trained for seconds.

The tiny model is a real CRNN trained by ``training.train`` and exported by
``training.export``; it reads badly, but every code path it runs is the real one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.rendering import png_bytes, render_line

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CORPUS_LINES = [
    line.strip() for line in (Path(__file__).parent.parent / "datasets/corpus/phrases.txt")
    .read_text(encoding="utf-8").splitlines() if line.strip()
]


def write_line_folder(folder: Path, texts: list[str], face: str, size: int = 36) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(texts):
        path = folder / f"{i:06d}.png"
        path.write_bytes(png_bytes(render_line(text, face, size)))
        (folder / f"{i:06d}.gt.txt").write_text(text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def short_lines(count: int, offset: int = 0) -> list[str]:
    """Short phrases cut from the shipped corpus (3-5 words each)."""
    words = " ".join(CORPUS_LINES).split()
    lines = []
    i = offset
    while len(lines) < count:
        n = 3 + (len(lines) % 3)
        lines.append(" ".join(words[i % len(words): i % len(words) + n]))
        i += n
    return lines


@pytest.fixture(scope="session")
def rendered_books(tmp_path_factory) -> Path:
    """Two 'books' in two typefaces, as line folders (NAME.png + NAME.gt.txt)."""
    root = tmp_path_factory.mktemp("books")
    write_line_folder(root / "book_amiri", short_lines(40), "Amiri-Regular")
    write_line_folder(root / "book_naskh", short_lines(12, offset=500), "Scheherazade-Regular")
    return root


@pytest.fixture(scope="session")
def tiny_arrays(rendered_books, tmp_path_factory) -> Path:
    from training import preprocess

    out = tmp_path_factory.mktemp("arrays")
    preprocess.main([str(rendered_books), "--out", str(out), "--val-source", "book_naskh",
                     "--height", "32", "--workers", "1"])
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_arrays, tmp_path_factory) -> Path:
    from training import train

    run = tmp_path_factory.mktemp("run")
    train.main(["--data", str(tiny_arrays), "--out", str(run), "--preset", "tiny", "--epochs", "3",
                "--steps-per-epoch", "12", "--batch-size", "8", "--lr", "3e-3", "--no-augment",
                "--min-char-count", "1", "--threads", "2"])
    return run


@pytest.fixture(scope="session")
def tiny_model(tiny_run, tiny_arrays, tmp_path_factory) -> Path:
    """A real exported ONNX model (tiny, trained for seconds)."""
    from training.export import export_run, parity_lines_from

    out = tmp_path_factory.mktemp("model") / "tiny-test.onnx"
    export_run(tiny_run, out, "tiny-test", "1", parity_lines_from([str(tiny_arrays)], 4))
    return out


@pytest.fixture(scope="session")
def tiny_history(tiny_run) -> list[dict]:
    return json.loads((tiny_run / "state.json").read_text(encoding="utf-8"))["history"]
