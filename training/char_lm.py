"""Build a character n-gram language model from transcriptions (``recognition.char_lm`` reads it).

    python -m training.char_lm build --corpus ../shared/datasets/openiti-gs datasets/corpus \\
        --exclude IbnQutayba --order 5 --min-count 1 --out models/arabic-char-lm.npz
    python -m training.char_lm info models/arabic-char-lm.npz

Reads every ``*.txt`` under the given folders (``NAME.gt.txt`` transcriptions,
plain text files), one line of text per line, normalised by the core's
convention (``recognition.text.normalize_text``) and folded as the model
scores it (``recognition.char_lm.fold``). A file whose path contains an
``--exclude`` string is never read (the held-out book).

Smoothing: interpolated Kneser-Ney, one discount per order
(D = n1 / (n1 + 2 n2), Ney's estimate from the counts of counts); the lower
orders count the distinct symbols seen before an n-gram (continuation
counts), except n-grams that start the line, which have none. Pruning: an
n-gram of order 3 or more seen fewer than ``--min-count`` times is dropped and
its probability mass given to its context's backoff, so every context still
sums to 1; a context left with nothing of its own is dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from recognition.char_lm import BOS, EOS, SPECIALS, CharacterLanguageModel, OrderTable, fold, save
from recognition.metadata import TEXT_NORMALISATION
from recognition.text import normalize_text
from training.corpus import iter_text_files

PRUNE_FROM_ORDER = 3  # bigrams are few and carry the most; pruning starts above them


def read_lines(paths: list[str], exclude: list[str]) -> tuple[list[str], dict[str, int]]:
    """Normalised non-empty lines of the corpus, and how many came from each source folder."""
    lines, sources = [], Counter()
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"no such corpus folder or file: {root}")
        for f in iter_text_files([str(root)], exclude):
            source = f.parent.relative_to(root.parent).as_posix() if root.is_dir() else f.name
            for raw in f.read_text(encoding="utf-8").splitlines():
                text = normalize_text(raw)
                if text:
                    lines.append(text)
                    sources[source] += 1
    return lines, dict(sorted(sources.items()))


def count_ngrams(encoded: list[bytes], order: int) -> list[Counter]:
    """Raw counts of every n-gram (n = 1..order) that ends on a predicted symbol (not the start)."""
    counts = [Counter() for _ in range(order)]
    for line in encoded:
        for end in range(1, len(line)):
            for n in range(1, min(order, end + 1) + 1):
                counts[n - 1][line[end - n + 1: end + 1]] += 1
    return counts


def kneser_ney(counts: list[Counter], bos: int, min_count: int) -> tuple[list[dict], list[float]]:
    """Per order: {context: (backoff, {symbol: explicit probability})}, and the discounts."""
    order = len(counts)
    adjusted = []
    for n in range(1, order + 1):
        if n == order:
            adjusted.append(counts[n - 1])
            continue
        continuation = Counter(gram[1:] for gram in counts[n])  # distinct symbols seen before each n-gram
        adjusted.append(Counter({g: (c if g[0] == bos else continuation[g]) for g, c in counts[n - 1].items()}))
    tables, discounts = [], []
    for n in range(1, order + 1):
        of_counts = Counter(adjusted[n - 1].values())
        n1, n2 = of_counts.get(1, 0), of_counts.get(2, 0)
        discount = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
        discounts.append(discount)
        grouped: dict[bytes, dict[int, float]] = defaultdict(dict)
        for gram, a in adjusted[n - 1].items():
            grouped[gram[:-1]][gram[-1]] = a
        table = {}
        for context, followers in grouped.items():
            total = sum(followers.values())
            explicit = {s: (a - discount) / total for s, a in followers.items()}
            backoff = discount * len(followers) / total
            if n >= PRUNE_FROM_ORDER and min_count > 1:
                dropped = [s for s in explicit if counts[n - 1][context + bytes([s])] < min_count]
                backoff += sum(explicit.pop(s) for s in dropped)
                if not explicit:
                    continue  # nothing of its own: the same as the shorter context
            table[context] = (min(backoff, 1.0), explicit)
        tables.append(table)
    return tables, discounts


def to_arrays(table: dict, n: int) -> OrderTable:
    contexts = sorted(table)
    offsets, symbols, probs = [0], [], []
    for context in contexts:
        explicit = table[context][1]
        for s in sorted(explicit):
            symbols.append(s)
            probs.append(explicit[s])
        offsets.append(len(symbols))
    return OrderTable(np.array([list(c) for c in contexts], np.uint8).reshape(len(contexts), n - 1),
                      np.array([table[c][0] for c in contexts], np.float32), np.array(offsets, np.int64),
                      np.array(symbols, np.uint8), np.array(probs, np.float32))


def build(lines: list[str], order: int, min_count: int = 1) -> tuple[dict, list[OrderTable]]:
    """Header and tables of a model of ``lines`` (already normalised)."""
    if order < 1:
        raise ValueError("the order must be at least 1")
    if not lines:
        raise ValueError("no text to build a language model from")
    characters = sorted({fold(c) for line in lines for c in line} - set(SPECIALS))
    symbols = list(SPECIALS) + characters
    if len(symbols) > 256:
        raise ValueError(f"{len(symbols)} symbols: a model holds at most 256")
    index = {s: i for i, s in enumerate(symbols)}
    encoded = [bytes([index[BOS]] + [index[fold(c)] for c in line] + [index[EOS]]) for line in lines]
    tables, discounts = kneser_ney(count_ngrams(encoded, order), index[BOS], min_count)
    header = {"symbols": symbols, "text_normalisation": TEXT_NORMALISATION, "character_order": "logical",
              "folding": {"<digit>": "decimal digits (Unicode Nd)", "<ltr>": "strong left-to-right characters (bidi L)"},
              "smoothing": "interpolated Kneser-Ney", "discounts": [round(d, 6) for d in discounts],
              "pruning": {"min_count": min_count, "from_order": PRUNE_FROM_ORDER},
              "ngrams": [sum(len(f) for _, f in t.values()) for t in tables]}
    return header, [to_arrays(t, n) for n, t in enumerate(tables, 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.char_lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="count, smooth, prune and write a model")
    make.add_argument("--corpus", nargs="+", required=True, help="folders (or text files) of transcriptions")
    make.add_argument("--exclude", nargs="*", default=[], help="leave out files whose path contains any of these")
    # Defaults: what models/arabic-char-lm.npz was built with (chosen by bench.language_model on the tune half).
    make.add_argument("--order", type=int, default=5, help="n: symbols of context + 1 (default %(default)s)")
    make.add_argument("--min-count", type=int, default=1,
                      help=f"drop n-grams of order {PRUNE_FROM_ORDER}+ seen fewer times (default %(default)s: "
                           "keep all)")
    make.add_argument("--out", type=Path, required=True)
    show = commands.add_parser("info", help="print a model file's header")
    show.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    if args.command == "info":
        model = CharacterLanguageModel.load(args.file)
        print(json.dumps({k: v for k, v in model.header.items() if k != "symbols"}, ensure_ascii=False, indent=2))
        print(model.describe())
        return 0
    lines, sources = read_lines(args.corpus, args.exclude)
    header, tables = build(lines, args.order, args.min_count)
    header["training_text"] = {"lines": len(lines), "characters": sum(map(len, lines)), "sources": sources,
                               "excluded": args.exclude}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(args.out, header, tables)
    model = CharacterLanguageModel.load(args.out)  # what was written reads back and checks out
    print(f"{args.out}: {model.describe()}, {args.out.stat().st_size / 1e6:.2f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
