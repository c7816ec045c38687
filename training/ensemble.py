"""Merge line models into one ONNX file that reads with all of them and averages their probabilities.

    python -m training.ensemble runs/a/loo-IbnQutayba.onnx runs/b/loo-IbnQutayba.onnx \\
        --out models/arabic-crnn-v3.onnx --name arabic-crnn-v3 --version 3.0

Models trained by the same recipe from different seeds make different mistakes; their per-frame
softmax outputs, averaged, read better than either (measured, not assumed: ``training.evaluate`` the
result beside its members). The members must read the same way: the same alphabet, input height, frame
stride, preprocessing and text convention (one CTC frame in each is the same strip of the image, so the
frames can be averaged). The merged graph takes the members' inputs (``image``, ``widths``) once and
gives one ``probs``: serving reads it like any model, at the members' summed cost.

The metadata is the first member's, renamed, with the members listed (name, version, SHA-256 of the
file) under ``ensemble``; a member's confidence calibration is dropped (it was fitted on that member's
scores): ``training.calibrate`` the result. ``--check-lines`` preprocessed arrays check that the
merged graph's output is the mean of the members' on their lines before the file is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from recognition.calibration import METADATA_KEY as CALIBRATION_KEY
from recognition.hashing import file_sha256
from recognition.metadata import ModelInfo

log = logging.getLogger("training.ensemble")
OUTPUT = "probs"
INPUTS = ("image", "widths")
# What must be equal for frame-by-frame averaging to mean anything.
MUST_AGREE = ("alphabet", "input_height", "width_stride", "mirror", "normalisation", "text_normalisation")
AGREEMENT_TOLERANCE = 1e-5


class EnsembleError(ValueError):
    pass


def _props(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def check_members(protos: list, paths: list[Path]) -> None:
    if len(protos) < 2:
        raise EnsembleError("an ensemble needs at least two models")
    first = ModelInfo.from_props(_props(protos[0])).summary()
    for proto, path in zip(protos[1:], paths[1:]):
        other = ModelInfo.from_props(_props(proto)).summary()
        differ = [key for key in MUST_AGREE if other[key] != first[key]]
        if differ:
            raise EnsembleError(f"{path} and {paths[0]} differ in {', '.join(differ)}: their frames cannot be averaged")
    for proto, path in zip(protos, paths):
        inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
        outputs = [o.name for o in proto.graph.output]
        if sorted(inputs) != sorted(INPUTS) or outputs != [OUTPUT]:
            raise EnsembleError(f"{path}: inputs {inputs} and outputs {outputs}, not {list(INPUTS)} -> [{OUTPUT!r}]")


def merged_graph(protos: list):
    """One graph: every member under its own prefix (m0/, m1/...) on the shared inputs, then the mean."""
    from onnx import TensorProto, compose, helper

    opsets: dict[str, int] = {}
    for proto in protos:
        for entry in proto.opset_import:
            opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    nodes, initializers, value_info = [], [], []
    member_outputs = []
    for i, proto in enumerate(protos):
        graph = compose.add_prefix_graph(proto.graph, f"m{i}/", rename_inputs=False)
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        value_info.extend(graph.value_info)
        member_outputs.append(graph.output[0].name)
    initializers.append(helper.make_tensor("ensemble_weight", TensorProto.FLOAT, [], [1.0 / len(protos)]))
    nodes.append(helper.make_node("Sum", member_outputs, ["ensemble_sum"], name="ensemble_sum"))
    nodes.append(helper.make_node("Mul", ["ensemble_sum", "ensemble_weight"], [OUTPUT], name="ensemble_mean"))
    first = protos[0].graph
    graph = helper.make_graph(nodes, "ensemble", list(first.input), [first.output[0]], initializers,
                              value_info=value_info)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                               producer_name="training.ensemble")
    merged.ir_version = max(p.ir_version for p in protos)
    return merged


def ensemble_info(protos: list, paths: list[Path], name: str, version: str) -> ModelInfo:
    info = ModelInfo.from_props(_props(protos[0]))
    members = []
    for proto, path in zip(protos, paths):
        member = ModelInfo.from_props(_props(proto))
        members.append({"file": path.name, "name": member.name, "version": member.version,
                        "sha256": file_sha256(path), "validation_cer": member.validation_cer,
                        "parameters": member.extra.get("parameters"),
                        "exported_epoch": member.extra.get("exported_epoch")})
    info.name, info.version = name, version
    info.extra.pop(CALIBRATION_KEY, None)  # fitted on one member's scores, not the mean's
    info.extra["ensemble"] = json.dumps(members, ensure_ascii=False)
    parameters = [m["parameters"] for m in members]
    if all(p and p.isdigit() for p in parameters):
        info.extra["parameters"] = str(sum(int(p) for p in parameters))
    cers = [m["validation_cer"] for m in members]
    # The members' own figures; the ensemble's is whatever training.evaluate measures on it.
    info.validation_cer = None
    info.extra["member_validation_cers"] = json.dumps(cers)
    independent = all(ModelInfo.from_props(_props(p)).extra.get("batch_independent") == "true" for p in protos)
    info.extra["batch_independent"] = "true" if independent else "false"
    return info


def max_difference_from_mean(merged_bytes: bytes, member_paths: list[Path], lines: list[np.ndarray]) -> float:
    """Largest |merged probs - mean of the members' probs| over ``lines``, each read alone."""
    import onnxruntime as ort

    def session(model):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    merged = session(merged_bytes)
    members = [session(str(p)) for p in member_paths]
    worst = 0.0
    for line in lines:
        feed = {"image": line[None, :, :, None].astype(np.float32),
                "widths": np.array([line.shape[1]], dtype=np.int32)}
        mean = np.mean([m.run([OUTPUT], feed)[0] for m in members], axis=0)
        worst = max(worst, float(np.abs(merged.run([OUTPUT], feed)[0] - mean).max()))
    return worst


def build(member_paths: list[Path], out: Path, name: str, version: str,
          check_lines: list[np.ndarray] | None = None) -> ModelInfo:
    import onnx

    from .export import attach_metadata

    protos = [onnx.load(str(p)) for p in member_paths]
    check_members(protos, member_paths)
    info = ensemble_info(protos, member_paths, name, version)
    merged = merged_graph(protos)
    attach_metadata(merged, info)
    onnx.checker.check_model(merged)
    merged_bytes = merged.SerializeToString()
    if check_lines:
        worst = max_difference_from_mean(merged_bytes, member_paths, check_lines)
        if worst > AGREEMENT_TOLERANCE:
            raise EnsembleError(f"the merged graph's output differs from the members' mean by {worst:.2e}")
        log.info("merged output = mean of the members' on %d lines (max |difference| %.1e)", len(check_lines), worst)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".onnx.tmp", delete=False) as tmp:
        tmp.write(merged_bytes)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, out)  # a watcher never sees half a model
    summary = info.summary()
    summary["alphabet"] = list(info.alphabet.characters)
    out.with_suffix(".json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.ensemble",
        description="Merge line models (same alphabet, height, stride, preprocessing) into one ONNX file that "
                    "averages their per-frame probabilities. Calibrate the result with training.calibrate.")
    parser.add_argument("models", nargs="+", type=Path, help="exported float ONNX line models (two or more)")
    parser.add_argument("--out", type=Path, required=True, help="the merged model (NAME.onnx; NAME.json beside it)")
    parser.add_argument("--name", required=True, help="the merged model's name (its metadata)")
    parser.add_argument("--version", default="1", help="its version (default: 1)")
    parser.add_argument("--check-lines", nargs="*", default=[], metavar="ARRAYS",
                        help="preprocessed line arrays (training.preprocess output): check on a few of their lines "
                             "that the merged output is the members' mean before writing")
    parser.add_argument("--check-count", type=int, default=8, help="how many lines to check (default: 8)")
    parser.add_argument("--int8", type=Path, metavar="OUT",
                        help="also write a dynamic-int8 copy (LSTM, MatMul weights), as training.export does")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .export import parity_lines_from, quantize_int8

    lines = parity_lines_from(args.check_lines, args.check_count) if args.check_lines else []
    try:
        info = build(args.models, args.out, args.name, args.version, lines)
    except (EnsembleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {info.name} {info.version}, {len(args.models)} members, "
          f"{info.extra.get('parameters', '?')} parameters")
    if args.int8:
        cer = quantize_int8(args.out, args.int8, lines)
        print(f"{args.int8}: int8, CER against the float ensemble on the check lines {cer:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
