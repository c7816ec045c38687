"""Whether a book's text is in a corpus: runs of consecutive words that both hold.

Synthetic lines are runs of 2-12 consecutive corpus words (``training.synth``), so a book whose
text is in the corpus reaches a model through them even when its images never do. Different books
share few long runs: of the five openiti-gs books, at most 0.7% of a book's lines of six words or
more share a run of six words with the other four books' text and the shipped corpus, and none a run
of eight (measured 2026-11, IbnJawzi the most: 6 of its 845 such lines); a book's own text shares
one with every such line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

RUN_WORDS = 6
# The most that different books were measured to share (above): a share of a book's lines.
DIFFERENT_BOOKS_SHARE = 0.007


def word_runs(words: list[str], length: int = RUN_WORDS) -> Iterator[tuple[str, ...]]:
    return (tuple(words[i: i + length]) for i in range(len(words) - length + 1))


def lines_sharing_runs(lines: Iterable[str], corpus_words: Iterable[str],
                       length: int = RUN_WORDS) -> tuple[int, int]:
    """(lines sharing a run of ``length`` words with the corpus, lines of at least ``length`` words).

    Both sides must be normalised alike (``recognition.text.normalize_text``). The corpus is read
    once as a stream, so it may be far larger than the lines.
    """
    runs_by_line = [set(word_runs(line.split(), length)) for line in lines]
    runs_by_line = [runs for runs in runs_by_line if runs]
    wanted = set().union(*runs_by_line)
    found: set[tuple[str, ...]] = set()
    window: list[str] = []
    for word in corpus_words:
        window.append(word)
        if len(window) > length:
            del window[0]
        if len(window) == length and tuple(window) in wanted:
            found.add(tuple(window))
    return sum(1 for runs in runs_by_line if runs & found), len(runs_by_line)
