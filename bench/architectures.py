"""Speed of each model preset, before training it (random weights).

    python -m bench.architectures --width 1000

Builds every preset in ``training.model.PRESETS``, exports it with tf2onnx
and times the same line (``--width`` px at height 48, scaled to the preset's
height) on one
onnxruntime thread (batch 1, median of ``--runs``), with the share of time in
LSTM and convolution nodes. Speed comes from the layout, so measure a layout
before spending hours training it. Writes ``bench/results/architectures.json``.
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

from bench.machine import RESULTS, machine


def profile(onnx_bytes: bytes, height: int, width: int, runs: int) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, height, width, 1), dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - began) * 1000)
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "arch-profile")
    profiled = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        profiled.run(None, feed)
    trace = json.loads(Path(profiled.end_profiling()).read_text())
    by_op = collections.Counter()
    for event in trace:
        if event.get("cat") == "Node":
            by_op[event["args"].get("op_name", "?")] += event["dur"]
    total = sum(by_op.values()) or 1
    return {"median_ms": statistics.median(times), "share": {op: round(t / total, 3) for op, t in by_op.most_common(4)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.architectures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1000,
                        help="line width in px at height 48; scaled with each preset's height (same line)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--classes", type=int, default=73)
    parser.add_argument("--out", default=str(RESULTS / "architectures.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.export import convert
    from training.model import PRESETS, build_model

    rows = []
    for name, config in PRESETS.items():
        model = build_model(config, args.classes)
        proto = convert(model, config.height)
        width = round(args.width * config.height / 48)
        result = profile(proto.SerializeToString(), config.height, width, args.runs)
        rows.append({"preset": name, "height": config.height, "parameters": model.count_params(), **result})
        print(f"{name:<10} h={config.height:<3} {model.count_params():>9,} params  {result['median_ms']:7.2f} ms "
              f"per line ({width} px)  " + ", ".join(f"{op} {100 * s:.0f}%" for op, s in result["share"].items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"width": args.width, "machine": machine(), "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
