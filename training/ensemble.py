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
file, and what describes its own run: epoch, machine, time, layout) under ``ensemble``; a member's confidence
calibration is dropped (it was fitted on that member's scores): ``training.calibrate`` the result. Before the
file is written the merged graph runs on lines (``--check-lines`` preprocessed arrays, else two noise lines),
alone and in one padded batch, and must give the members' mean. Quantized members are refused: merge the float
models and quantize the result (``--int8``). An ensemble has no Keras twin, so it cannot be fine-tuned (book
adaptation needs one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recognition.calibration import METADATA_KEY as CALIBRATION_KEY
from recognition.hashing import file_sha256
from recognition.metadata import ModelInfo, ModelMetadataError

log = logging.getLogger("training.ensemble")
OUTPUT = "probs"
INPUTS = ("image", "widths")
# What must be equal for frame-by-frame averaging to mean anything.
MUST_AGREE = ("alphabet", "input_height", "width_stride", "mirror", "normalisation", "text_normalisation")
# Extra metadata that must agree too: a book's spacing conventions (adapted models) would otherwise be member 0's.
MUST_AGREE_EXTRA = ("transcription_conventions",)
# Member facts that describe one training run, not the merged file: kept per member under "ensemble".
PER_MEMBER = ("architecture", "parameters", "best_epoch", "exported_epoch", "exported_checkpoint",
              "training_seconds", "training_machine", "exported", "ema_momentum")
AGREEMENT_TOLERANCE = 1e-5


class EnsembleError(ValueError):
    pass


def _props(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def check_members(protos: list, paths: list[Path]) -> None:
    if len(protos) < 2:
        raise EnsembleError("an ensemble needs at least two models")
    for proto, path in zip(protos, paths):
        if "quantization" in _props(proto):
            raise EnsembleError(f"{path} is quantized: merge the float models, then quantize the result (--int8)")
    first = ModelInfo.from_props(_props(protos[0])).summary()
    opsets = sorted((e.domain or "", e.version) for e in protos[0].opset_import)
    for proto, path in zip(protos[1:], paths[1:]):
        other = ModelInfo.from_props(_props(proto)).summary()
        differ = [key for key in MUST_AGREE if other[key] != first[key]]
        differ += [key for key in MUST_AGREE_EXTRA if other["extra"].get(key) != first["extra"].get(key)]
        if differ:
            raise EnsembleError(f"{path} and {paths[0]} differ in {', '.join(differ)}: their frames cannot be averaged")
        if sorted((e.domain or "", e.version) for e in proto.opset_import) != opsets:
            raise EnsembleError(f"{path} and {paths[0]} use other operator sets: export them alike")
    for proto, path in zip(protos, paths):
        inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
        outputs = [o.name for o in proto.graph.output]
        if sorted(inputs) != sorted(INPUTS) or outputs != [OUTPUT]:
            raise EnsembleError(f"{path}: inputs {inputs} and outputs {outputs}, not {list(INPUTS)} -> [{OUTPUT!r}]")


def merged_graph(protos: list):
    """One graph: every member under its own prefix (m0/, m1/...) on the shared inputs, then the mean."""
    from onnx import TensorProto, compose, helper

    opsets = {entry.domain or "": entry.version for entry in protos[0].opset_import}
    nodes, initializers, value_info = [], [], []
    member_outputs = []
    for i, proto in enumerate(protos):
        prefix = f"m{i}/"
        graph = compose.add_prefix_graph(proto.graph, prefix)
        shared = {prefix + name: name for name in INPUTS}  # every member reads the one image and widths
        for node in graph.node:
            node.input[:] = [shared.get(name, name) for name in node.input]
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
    infos = [ModelInfo.from_props(_props(proto)) for proto in protos]
    members = []
    for member, path in zip(infos, paths):
        members.append({"file": path.name, "name": member.name, "version": member.version,
                        "sha256": file_sha256(path), "validation_cer": member.validation_cer,
                        **{key: member.extra[key] for key in PER_MEMBER if key in member.extra}})
    info = infos[0]
    info.name, info.version = name, version
    for key in (*PER_MEMBER, CALIBRATION_KEY):  # one run's facts; a calibration fitted on one member's scores
        info.extra.pop(key, None)
    if any(member.training_data != info.training_data for member in infos[1:]):
        info.training_data = ""  # the members saw different data: each one's is in its own file
    info.extra["ensemble"] = json.dumps(members, ensure_ascii=False)
    parameters = [m.get("parameters", "") for m in members]
    if all(p.isdigit() for p in parameters):
        info.extra["parameters"] = str(sum(int(p) for p in parameters))
    if all(m.get("architecture") == members[0].get("architecture") for m in members):
        info.extra["architecture"] = members[0].get("architecture", "")
    info.validation_cer = None  # the members' figures are theirs; the ensemble's is what training.evaluate measures
    info.extra["exported"] = datetime.now(UTC).isoformat(timespec="seconds")
    independent = all(member.extra.get("batch_independent") == "true" for member in infos)
    info.extra["batch_independent"] = "true" if independent else "false"
    return info


def check_lines_for(height: int, lines: list[np.ndarray]) -> list[np.ndarray]:
    """The lines the merged graph is checked on: those given, else two of noise at two widths (the check is of the
    wiring, which any input exercises)."""
    if lines:
        return lines
    rng = np.random.default_rng(0)
    return [rng.random((height, width), dtype=np.float32) for width in (96, 301)]


def max_difference_from_mean(merged_bytes: bytes, member_paths: list[Path], lines: list[np.ndarray]) -> float:
    """Largest |merged probs - mean of the members' probs| over ``lines``: each line alone, and all of them in one
    zero-padded batch (each line's own frames compared), as ``Recognizer`` batches them."""
    import onnxruntime as ort

    def session(model):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    merged = session(merged_bytes)
    members = [session(str(p)) for p in member_paths]
    height, widest = lines[0].shape[0], max(line.shape[1] for line in lines)
    batch = np.zeros((len(lines), height, widest, 1), np.float32)
    for row, line in enumerate(lines):
        batch[row, :, : line.shape[1], 0] = line
    feeds = [{"image": line[None, :, :, None].astype(np.float32), "widths": np.array([line.shape[1]], np.int32)}
             for line in lines]
    feeds.append({"image": batch, "widths": np.array([line.shape[1] for line in lines], np.int32)})
    worst = 0.0
    for feed in feeds:  # the same input to both sides: every frame, padding included, must agree
        mean = np.mean([m.run([OUTPUT], feed)[0] for m in members], axis=0)
        worst = max(worst, float(np.abs(merged.run([OUTPUT], feed)[0] - mean).max()))
    return worst


def _load(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), format="protobuf")  # whatever the file's name says (onnx reads .json as JSON)
    except (DecodeError, ValueError) as exc:
        raise EnsembleError(f"{path} is not an ONNX model ({exc})") from None
    try:
        ModelInfo.from_props(_props(proto))
    except ModelMetadataError as exc:
        raise EnsembleError(f"{path}: {exc}") from None
    return proto


def build(member_paths: list[Path], out: Path, name: str, version: str,
          check_lines: list[np.ndarray] | None = None) -> ModelInfo:
    """Merge, check (the members' mean on ``check_lines``, or on noise lines when none are given), write."""
    import onnx
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail

    from .export import attach_metadata

    protos = [_load(p) for p in member_paths]
    check_members(protos, member_paths)
    info = ensemble_info(protos, member_paths, name, version)
    merged = merged_graph(protos)
    attach_metadata(merged, info)
    try:
        onnx.checker.check_model(merged)
        lines = check_lines_for(info.input_height, list(check_lines or []))
        merged_bytes = merged.SerializeToString()
        worst = max_difference_from_mean(merged_bytes, member_paths, lines)
    except (onnx.checker.ValidationError, OrtFail, RuntimeError) as exc:
        raise EnsembleError(f"the merged graph does not run: {exc}") from None
    if not worst <= AGREEMENT_TOLERANCE:
        raise EnsembleError(f"the merged graph's output differs from the members' mean by {worst:.2e}")
    log.info("merged output = the members' mean on %d lines alone and in one padded batch (max |difference| %.1e)",
             len(lines), worst)
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

    if args.int8 and not args.check_lines:
        parser.error("--int8 needs --check-lines: the int8 copy is compared with the float ensemble on real lines")
    if args.check_lines and args.check_count < 1:
        parser.error("--check-count must be at least 1")
    try:
        lines = parity_lines_from(args.check_lines, args.check_count) if args.check_lines else []
        if args.check_lines and not lines:
            raise EnsembleError(f"no lines in {', '.join(args.check_lines)}")
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
