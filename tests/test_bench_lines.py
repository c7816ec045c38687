"""The benches' line selection (``bench.lines``) and the machine they record (``bench.machine``, from ``training.machine``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.lines import select_lines
from bench.machine import machine
from training.machine import machine_description


@pytest.fixture()
def lines(tmp_path):
    """Two books, interleaved by name within the data: book_A/ 3 lines, book_B/ 4 lines, book_AB/ 2."""
    for book, count in (("book_A", 3), ("book_B", 4), ("book_AB", 2)):
        folder = tmp_path / "data" / book
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{i:03}.png").write_bytes(b"")  # never opened here
            (folder / f"{i:03}.gt.txt").write_text(f"{book} {i}", encoding="utf-8")
    return tmp_path / "data"


def texts(samples) -> list[str]:
    return [s.text for s in samples]


def test_every_line_in_file_order_where_nothing_is_asked(lines):
    assert texts(select_lines([str(lines)])) == [f"book_A {i}" for i in range(3)] + [
        f"book_AB {i}" for i in range(2)] + [f"book_B {i}" for i in range(4)]
    assert select_lines([str(lines)], []) == select_lines([str(lines)])  # `--sources` given no names: all


def test_sources_match_as_the_rest_of_the_project_matches_them(lines):
    assert texts(select_lines([str(lines)], ["book_B"])) == [f"book_B {i}" for i in range(4)]
    assert len(select_lines([str(lines)], ["A"])) == 5  # a part of a name: book_A and book_AB


def test_at_most_counts_all_lines_and_at_most_per_source_each_source(lines):
    assert texts(select_lines([str(lines)], at_most=4)) == ["book_A 0", "book_A 1", "book_A 2", "book_AB 0"]
    assert texts(select_lines([str(lines)], at_most_per_source=2)) == [
        "book_A 0", "book_A 1", "book_AB 0", "book_AB 1", "book_B 0", "book_B 1"]
    assert texts(select_lines([str(lines)], ["B"], at_most=3, at_most_per_source=1)) == ["book_AB 0", "book_B 0"]


def test_a_missing_folder_fails_however_few_lines_are_asked(lines):
    with pytest.raises(FileNotFoundError):
        select_lines([str(lines), str(lines / "nowhere")], at_most=1)


def test_the_machine_is_described_the_same_way_as_before():
    assert set(machine()) == {"cpu", "cores", "python", "system"} and machine()["cpu"]
    assert f"{machine()['cores']} CPU cores" in machine_description()


def test_the_service_benches_record_the_machine_without_importing_the_recogniser_bench():
    benches = ("service", "jobs", "book_loading", "soak", "adaptation", "architectures")
    code = ("import sys\n" + "".join(f"import bench.{b}\n" for b in benches)
            + "print(sorted(m for m in ('bench.recognizer', 'training.evaluate', 'recognition.recognizer') "
              "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_recognizer_bench_measures_only_lines_of_the_widths_asked(tiny_model, tmp_path):
    """`bench.recognizer --widths`: 'a typical line' is a width, so the lines are chosen by it before --max-lines."""
    from PIL import Image

    from bench import recognizer
    from tests.conftest import short_lines, write_line_folder

    texts = short_lines(6) + [" ".join(short_lines(6, offset=300))]   # six short lines and a long one
    paths = write_line_folder(tmp_path / "book", texts, "Amiri-Regular")
    widths = [Image.open(p).size[0] for p in paths]
    low, high = sorted(widths)[1], sorted(widths)[4]                 # a band the extremes fall outside
    inside = [w for w in widths if low <= w <= high]
    out = tmp_path / "speed.json"
    assert recognizer.main([str(tmp_path / "book"), "--models", str(tiny_model), "--batches", "1", "--threads", "1",
                            "--no-tesseract", "--widths", str(low), str(high), "--max-lines", "3",
                            "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["lines"] == min(3, len(inside)) and result["widths"] == [low, high]
    assert low <= result["median_width_px"] <= high and len(result["rows"]) == 1
