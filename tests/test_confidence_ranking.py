"""The confidence-ranking bench (``bench.confidence_ranking``) on rendered lines, read by the shipped models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import confidence_ranking
from tests.conftest import short_lines, write_line_folder
from tests.rendering import png_bytes, render_line

MODELS = Path(__file__).resolve().parent.parent / "models"


def rubbed(text: str, seed: int) -> bytes:
    """A rendered line with half the ink of its middle fifth rubbed off: errors, in every run."""
    image = render_line(text, size=40).copy()
    middle = image[:, int(0.4 * image.shape[1]): int(0.6 * image.shape[1])]
    spots = np.random.default_rng(seed).random(middle.shape) < 0.5
    middle[spots] = 255 - middle[spots] // 2
    return png_bytes(image)


def test_the_bench_ranks_a_book_with_every_key_and_none_beats_the_perfect_ranking(tmp_path):
    book = tmp_path / "book_rendered"
    texts = short_lines(24, offset=300)
    paths = write_line_folder(book, texts, "Amiri-Regular", size=40)
    for i in range(0, len(paths), 4):  # every fourth line damaged, in both halves
        paths[i].write_bytes(rubbed(texts[i], i))
    out = tmp_path / "results" / "ranking.json"
    assert confidence_ranking.main([str(book), "--model", str(MODELS / "arabic-crnn-v2-int8.onnx"),
                                    "--committee", str(MODELS / "arabic-crnn-swift-int8.onnx"),
                                    "--lm", str(MODELS / "arabic-char-lm.npz"), "--json", str(out)]) == 0

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["lines"] == 24 and report["halves"]["first_half"]["lines"] == 12
    assert report["character_errors"] > 0 and report["machine"]["cores"] and report["arguments"]["book"] == str(book)
    rows = {r["key"]: r for r in report["rows"]}
    assert set(confidence_ranking.DESCRIPTIONS) | {confidence_ranking.FITTED, "random order", "best possible"} == set(rows)
    best = rows.pop("best possible")
    for key, row in rows.items():
        for part in ("all", "first_half", "second_half"):
            assert 0.0 <= row[part] <= best[part] <= 1.0, (key, part)
    assert report["poisson"]["features"] == [k for k in confidence_ranking.DESCRIPTIONS if k != confidence_ranking.SERVED]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert report["best_other_key"] in rows


def test_the_poisson_regression_recovers_the_rates_it_was_drawn_from():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4000, 2)) * [1.0, 3.0] + [0.0, 5.0]
    rate = np.exp(0.2 + 0.7 * features[:, 0] - 0.1 * features[:, 1])
    fit = confidence_ranking.fit_poisson(features, rng.poisson(rate).astype(np.float64))
    assert confidence_ranking.predict_poisson(fit, features) == pytest.approx(rate, rel=0.15)
