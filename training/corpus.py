"""Word streams to draw synthetic line text from."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from recognition.text import normalize_text

# The shipped general text, found from the package so a command run outside the checkout's root finds it too.
DEFAULT_CORPUS = str(Path(__file__).resolve().parent.parent / "datasets" / "corpus")


def corpus_name(file: Path, root: Path) -> str:
    """The name an exclusion is matched against: from the given folder's own name down
    (``openiti-gs/book_IbnQutayba.Adab/7_final/000001.gt.txt``); for a file given itself, its folder's
    name and its own. Not the absolute path: a checkout or temporary folder whose path happens to hold
    the excluded name would otherwise drop every file of the corpus."""
    given = Path(os.path.abspath(root))  # "." and ".." named, links not followed
    if not root.is_dir():
        return f"{given.parent.name}/{given.name}"
    return f"{given.name}/{file.relative_to(root).as_posix()}"


def iter_text_files(paths: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    """The text files (``*.txt``, so also ``*.gt.txt``) of the files and folders given, without those
    whose :func:`corpus_name` holds one of ``exclude``."""
    exclude = list(exclude)
    files: list[Path] = []
    for p in map(Path, paths):
        candidates = sorted(p.rglob("*.txt")) if p.is_dir() else [p]
        files.extend(f for f in candidates if not any(x in corpus_name(f, p) for x in exclude))
    return files


class TextCorpus:
    """All words of some text files, in order, so samples read like prose."""

    def __init__(self, words: list[str], num_files: int = 0):
        if not words:
            raise ValueError("the text corpus is empty")
        self.words = words
        self.num_files = num_files

    @classmethod
    def from_paths(cls, paths: Iterable[str], exclude: Iterable[str] = (), min_char_count: int = 2) -> TextCorpus:
        """The words of the text files, without words holding a character seen fewer than
        ``min_char_count`` times: synthesis samples words over and over, so a one-off markup
        character of a transcription (``<``, ``~``) would otherwise become a class of the model."""
        files = iter_text_files(paths, exclude)
        words: list[str] = []
        for f in files:
            for line in f.read_text(encoding="utf-8").splitlines():
                words.extend(normalize_text(line).split())
        counts = Counter(c for w in words for c in w)
        rare = {c for c, n in counts.items() if n < min_char_count}
        return cls([w for w in words if rare.isdisjoint(w)], len(files))

    @property
    def num_words(self) -> int:
        return len(self.words)

    def sample_words(self, rng: np.random.Generator, count: int) -> list[str]:
        count = min(count, len(self.words))
        start = int(rng.integers(0, len(self.words) - count + 1))
        return self.words[start: start + count]
