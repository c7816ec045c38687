"""Where a line's time goes: preprocessing, the model (by operator type), decoding; batch 1, one thread.

    python -m bench.line_profile ../shared/datasets/openiti-gs --sources IbnQutayba --max-lines 200 \
        --models models/arabic-crnn-v2-int8.onnx models/arabic-crnn-swift-int8.onnx

Each stage is timed in CPU seconds of this process (``time.process_time``), so
other work on the machine slows it less than it slows wall-clock figures; the
model's operators come from onnxruntime's own profiler on a second session
(its per-node timing adds overhead of its own, so those are shares of the
model's kernel time, not milliseconds to add up). Prints a table per model and
writes ``bench/results/line_profile.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.lines import select_lines
from recognition.ctc import decode_line
from recognition.image import load_grey
from recognition.recognizer import Recognizer

RESULTS = Path(__file__).parent / "results"


def stage_times(recognizer: Recognizer, greys: list[np.ndarray], repeats: int) -> dict[str, float]:
    """Median CPU milliseconds a line of each stage: preprocess, model (padding and run), decode, and all three."""
    times = collections.defaultdict(list)
    info = recognizer.info
    for _ in range(repeats):
        for grey in greys:
            t0 = time.process_time()
            line = recognizer.prepare(grey)
            t1 = time.process_time()
            probs = recognizer.probabilities([line])[0]
            t2 = time.process_time()
            decode_line(probs, info.alphabet, info.mirror, recognizer.calibration, recognizer.conventions)
            t3 = time.process_time()
            for stage, seconds in (("preprocess", t1 - t0), ("model", t2 - t1), ("decode", t3 - t2),
                                   ("line", t3 - t0)):
                times[stage].append(1000 * seconds)
    return {stage: statistics.median(values) for stage, values in times.items()}


def operator_shares(model: Path, lines: list[np.ndarray], stride: int) -> tuple[dict[str, float], int]:
    """Share of the model's kernel time per operator type (after onnxruntime's own fusions), and node count."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        for line in lines:
            width = max(stride, -(-line.shape[1] // stride) * stride)
            image = np.zeros((1, line.shape[0], width, 1), np.float32)
            image[0, :, : line.shape[1], 0] = line
            session.run(None, {"image": image, "widths": np.array([line.shape[1]], np.int32)})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_type, nodes = collections.Counter(), set()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_type[event["args"]["op_name"]] += event["dur"]
            nodes.add(event["name"])
    total = sum(by_type.values())
    return {op: round(us / total, 4) for op, us in by_type.most_common()}, len(nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.line_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="line folders (NAME.png + NAME.gt.txt) or manifests")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--sources", nargs="*", help="only these sources (e.g. the held-out book)")
    parser.add_argument("--max-lines", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the lines for the stage times")
    parser.add_argument("--out", default=str(RESULTS / "line_profile.json"))
    args = parser.parse_args(argv)

    samples = select_lines(args.data, args.sources, at_most=args.max_lines)
    if not samples:
        parser.error("no lines found")
    greys = [load_grey(s.image_path) for s in samples]
    results = {"lines": len(samples), "load_average": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "models": {}}
    for model in args.models:
        recognizer = Recognizer(model, threads=1, max_batch=1)
        recognizer.warm_up()
        stages = stage_times(recognizer, greys, args.repeats)
        lines = [recognizer.prepare(grey) for grey in greys]
        shares, nodes = operator_shares(Path(model), lines, recognizer.info.width_stride)
        results["models"][Path(model).stem] = {"cpu_ms": stages, "operator_shares": shares, "nodes_run": nodes}
        print(f"\n{Path(model).stem}: CPU ms a line (median): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        print(f"  model time by operator ({nodes} nodes run): "
              + ", ".join(f"{op} {100 * share:.1f}%" for op, share in shares.items() if share >= 0.005))
    print(f"\nload average {results['load_average'][0]:.2f}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
