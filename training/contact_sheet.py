"""A PNG of sample lines per source, so a person can compare real and synthetic.

    python -m training.contact_sheet ../shared/datasets/openiti-gs data/synth --out sheet.png
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
from PIL import Image, ImageDraw

from recognition.image import ImageError, load_grey
from recognition.line_data import SkipReport, iter_samples

WIDTH = 1400
LINE_HEIGHT = 64


def build_sheet(sources: list[str], per_source: int, seed: int = 0) -> Image.Image:
    by_source = defaultdict(list)
    for sample in iter_samples(sources, SkipReport()):
        by_source[sample.source].append(sample)
    rng = np.random.default_rng(seed)
    rows = []
    for source in sorted(by_source):
        samples = by_source[source]
        picks = rng.choice(len(samples), size=min(per_source, len(samples)), replace=False)
        label = Image.new("L", (WIDTH, 22), 230)
        ImageDraw.Draw(label).text((6, 5), f"{source} ({len(samples)} lines)", fill=0)
        rows.append(label)
        for i in sorted(picks):
            try:
                grey = load_grey(samples[i].image_path)
            except ImageError:
                continue
            scale = LINE_HEIGHT / grey.shape[0]
            line = Image.fromarray(grey).resize((max(1, int(grey.shape[1] * scale)), LINE_HEIGHT))
            if line.width > WIDTH:
                line = line.crop((line.width - WIDTH, 0, line.width, LINE_HEIGHT))  # keep the line's start (right)
            row = Image.new("L", (WIDTH, LINE_HEIGHT + 4), 255)
            row.paste(line, (WIDTH - line.width, 2))
            rows.append(row)
    sheet = Image.new("L", (WIDTH, sum(r.height for r in rows) or 1), 255)
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.contact_sheet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="line folders or manifests")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--per-source", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_sheet(args.sources, args.per_source, args.seed).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
