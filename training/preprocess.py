"""Turn line datasets into sharded training arrays.

    python -m training.preprocess ../shared/datasets/openiti-gs --out data/real \\
        --val-source IbnQutayba

Texts go through the core's normaliser, images through the core's
``preprocess`` (the very function the service runs), and labels are stored in
the model's right-to-left reading order. Splits are by source (book), never by
random line. Writes shards, ``alphabet.json`` (with counts) and
``manifest.json``; prints a report of what was skipped and why.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from recognition.alphabet import Alphabet
from recognition.image import ImageError, PreprocessConfig, load_grey, preprocess
from recognition.line_data import LineSample, SkipReport, iter_samples, matches_source
from recognition.metadata import TEXT_NORMALISATION
from recognition.text import normalize_text

from .shards import MANIFEST, Line, ShardWriter

log = logging.getLogger("training.preprocess")


def assign_split(source: str, val: list[str], test: list[str]) -> str:
    if test and matches_source(source, test):
        return "test"
    if val and matches_source(source, val):
        return "val"
    return "train"


_CONFIG = PreprocessConfig()


def _set_config(config: PreprocessConfig) -> None:
    global _CONFIG
    _CONFIG = config


def _load(sample: LineSample) -> tuple[np.ndarray | None, str]:
    try:
        line = preprocess(load_grey(sample.image_path), _CONFIG)
    except ImageError as exc:
        return None, f"unreadable image ({exc.code})"
    return np.clip(np.rint(line * 255), 0, 255).astype(np.uint8), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="dataset folders (NAME.png + NAME.gt.txt) or TSV/CSV manifests")
    parser.add_argument("--out", required=True, help="output folder for shards and manifest")
    parser.add_argument("--val-source", nargs="*", default=[], help="source names held out for validation")
    parser.add_argument("--test-source", nargs="*", default=[], help="source names held out for testing")
    parser.add_argument("--height", type=int, default=PreprocessConfig.height, help="model input height (px)")
    parser.add_argument("--max-lines", type=int, help="stop after this many lines (quick experiments)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    samples: list[tuple[LineSample, str, str]] = []
    for sample in iter_samples(args.sources, report):
        text = normalize_text(sample.text)
        if not text:
            report.skip("empty transcription", str(sample.image_path))
            continue
        samples.append((sample, text, assign_split(sample.source, args.val_source, args.test_source)))
        if args.max_lines and len(samples) >= args.max_lines:
            break
    if not samples:
        parser.error("no usable lines found in the given sources")

    char_counts: dict[str, Counter] = defaultdict(Counter)
    for _, text, split in samples:
        char_counts[split].update(text)
    # Every character seen, with its counts: which of them the model learns is training's choice.
    alphabet = Alphabet.from_texts(text for _, text, _ in samples)

    config = PreprocessConfig(height=args.height)
    writers = {split: ShardWriter(out, split) for split in ("train", "val", "test")}
    widths: dict[str, list[int]] = defaultdict(list)
    sources: dict[str, Counter] = defaultdict(Counter)
    usable = samples
    train_chars = set(char_counts["train"])
    # Held-out lines keep characters training never saw: dropping them would flatter the CER.
    unseen = Counter(c for _, text, split in samples if split != "train" for c in text if c not in train_chars)

    start = time.monotonic()
    with multiprocessing.get_context("fork").Pool(args.workers, initializer=_set_config, initargs=(config,)) as pool:
        loaded = pool.imap(_load, [s for s, _, _ in usable], chunksize=8)
        for (sample, text, split), (image, error) in tqdm(zip(usable, loaded), total=len(usable),
                                                          unit="line", file=sys.stderr, disable=None):
            if image is None:
                report.skip(error, str(sample.image_path))
                continue
            writers[split].add(Line(image, text, sample.image_path.name, sample.source))
            widths[split].append(image.shape[1])
            sources[split][sample.source] += 1
    for writer in writers.values():
        writer.flush()
    elapsed = time.monotonic() - start
    kept = sum(len(w) for w in widths.values())

    all_counts = sum(char_counts.values(), Counter())
    alphabet_doc = {
        "characters": list(alphabet.characters),
        "counts": {c: all_counts[c] for c in alphabet.characters},
        "counts_by_split": {s: {c: char_counts[s][c] for c in alphabet.characters} for s in char_counts},
    }
    (out / "alphabet.json").write_text(json.dumps(alphabet_doc, ensure_ascii=False, indent=1), encoding="utf-8")
    manifest = {
        "sources": args.sources,
        "input_height": args.height,
        "normalisation": config.normalisation,
        "text_normalisation": TEXT_NORMALISATION,
        "alphabet": "".join(alphabet.characters),
        "splits": {
            split: {
                "lines": len(widths[split]),
                "sources": dict(sources[split]),
                "width": _stats(widths[split]),
                "shards": writers[split].files,
            }
            for split in ("train", "val", "test") if widths[split]
        },
        "skipped": report.as_dict(),
        "held_out_characters_not_in_training": dict(unseen),
        "seconds": round(elapsed, 1),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    print(format_report(manifest, alphabet_doc, kept / max(elapsed, 1e-9)))
    return 0


def _stats(values: list[int]) -> dict:
    if not values:
        return {}
    a = np.array(values)
    return {"min": int(a.min()), "median": int(np.median(a)), "max": int(a.max()), "total": int(a.sum())}


def format_report(manifest: dict, alphabet_doc: dict, rate: float) -> str:
    lines = [f"{'split':<6} {'lines':>6}  sources"]
    for split, info in manifest["splits"].items():
        lines.append(f"{split:<6} {info['lines']:>6}  " + ", ".join(f"{s} ({n})" for s, n in info["sources"].items()))
    counts = alphabet_doc["counts"]
    lines.append(f"alphabet: {len(counts)} characters: {''.join(alphabet_doc['characters'])}")
    rare = [f"{c!r} U+{ord(c):04X} x{n}" for c, n in sorted(counts.items(), key=lambda x: x[1]) if n < 20]
    if rare:
        lines.append("rare (<20): " + ", ".join(rare))
    skipped = manifest["skipped"]
    lines.append(f"skipped: {skipped['total']}")
    for reason, n in skipped["by_reason"].items():
        lines.append(f"  {n:>5}  {reason}  e.g. {skipped['examples'][reason][0]}")
    lines.append(f"{rate:.1f} lines/s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
