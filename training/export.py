"""Export a trained run to a self-describing ONNX model (and keep its Keras twin).

    python -m training.export runs/crnn-v1 --out models/arabic-crnn-v1.onnx

Writes ``NAME.onnx`` (inference graph only: image -> per-frame softmax, dynamic
batch and width, metadata in ``metadata_props``), ``NAME.keras`` (for
fine-tuning) and ``NAME.json`` (the same metadata, readable without onnx).
Before anything is written, Keras and onnxruntime are run on real lines and
must agree; the largest difference is printed.
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

from recognition.alphabet import Alphabet
from recognition.metadata import ModelInfo

from .checkpoint import load_model, save_model
from .graph_simplification import GraphPatternError, differing_outputs, simplify_graph
from .model import WIDTH_STRIDE, ModelConfig, build_model, copy_weights, frames_for, padded_width
from .shards import read_split

log = logging.getLogger("training.export")
PARITY_TOLERANCE = 1e-3


class ParityError(RuntimeError):
    pass


def convert(keras_model, config: ModelConfig, num_classes: int, opset: int = 17, simplify: bool = True,
            check_lines: list[np.ndarray] = ()):
    """Keras -> ONNX ModelProto with inputs ``image`` and ``widths`` (readers ask the session for the output name).

    tf2onnx turns only unmasked Keras LSTMs into ONNX LSTM nodes (a masked one
    becomes a slow Loop), so the graph is converted without the LSTM mask and
    each LSTM node then gets ``sequence_lens`` = frames per line, computed in
    the graph from ``widths``: the ONNX LSTM stops the forward pass and starts
    the backward pass at each line's last frame, as the masked Keras model does.
    The converter's shape bookkeeping is then rewritten into what it computes
    (``training.graph_simplification``: the same outputs, bit for bit, in less time;
    checked on ``check_lines``); ``simplify=False`` keeps tf2onnx's graph.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    unmasked = build_model(config, num_classes, mask_lstm=False)
    copy_weights(keras_model, unmasked)
    signature = [tf.TensorSpec((None, config.height, None, 1), tf.float32, name="image"),
                 tf.TensorSpec((None,), tf.int32, name="widths")]
    proto, _ = tf2onnx.convert.from_keras(unmasked, input_signature=signature, opset=opset)
    add_sequence_lengths(proto)
    return simplified(proto, check_lines) if simplify else proto


def simplified(proto, lines: list[np.ndarray]):
    """``proto`` with its graph simplified if the rewrite applies and the outputs stay bit-identical on
    ``lines`` (each alone and in padded batches); ``proto`` itself otherwise, with a warning: a slower
    graph is still a right one."""
    import onnx

    candidate = onnx.load_from_string(proto.SerializeToString())
    try:
        report = simplify_graph(candidate)
    except GraphPatternError as error:
        log.warning("graph NOT simplified (not shaped as expected): %s", error)
        return proto
    if lines:
        ordered = sorted(lines, key=lambda line: line.shape[1])  # batches of similar widths, as readers make
        differing = differing_outputs(proto.SerializeToString(), candidate.SerializeToString(), ordered,
                                      WIDTH_STRIDE)
        if differing:
            log.warning("graph NOT simplified: %d runs of %d lines give other outputs", differing, len(lines))
            return proto
    log.info("graph simplified: %s; outputs bit-identical on %d lines", report, len(lines))
    return candidate


def add_sequence_lengths(proto) -> None:
    """Give every LSTM node ``sequence_lens = ceil(widths / WIDTH_STRIDE)``."""
    from onnx import TensorProto, helper

    graph = proto.graph
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    if not lstms:
        raise ValueError("the converted graph has no LSTM node to give sequence lengths")
    graph.initializer.extend([
        helper.make_tensor("frames_round_up", TensorProto.INT32, [], [WIDTH_STRIDE - 1]),
        helper.make_tensor("frames_stride", TensorProto.INT32, [], [WIDTH_STRIDE]),
    ])
    nodes = [
        helper.make_node("Add", ["widths", "frames_round_up"], ["widths_rounded_up"], name="frames_add"),
        helper.make_node("Div", ["widths_rounded_up", "frames_stride"], ["sequence_lengths"], name="frames_div"),
    ]
    for node in lstms:
        while len(node.input) < 5:
            node.input.append("")
        node.input[4] = "sequence_lengths"
    for i, node in enumerate(nodes):  # before their consumers: the graph stays topologically sorted
        graph.node.insert(i, node)


def attach_metadata(proto, info: ModelInfo) -> None:
    del proto.metadata_props[:]
    for key, value in info.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"{info.name} {info.version}: Arabic text-line recogniser (CTC)"


def check_parity(keras_model, onnx_bytes: bytes, lines: list[np.ndarray]) -> float:
    """Largest absolute difference between Keras reading each line alone and onnxruntime reading
    all of them in one padded batch: parity and batch independence in one figure."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    output_name = session.get_outputs()[0].name
    widths = np.array([line.shape[1] for line in lines], np.int32)
    batch = np.zeros((len(lines), lines[0].shape[0], padded_width(widths.max()), 1), np.float32)
    for row, line in enumerate(lines):
        batch[row, :, : line.shape[1], 0] = line
    together = session.run([output_name], {"image": batch, "widths": widths})[0]
    worst = 0.0
    for row, line in enumerate(lines):
        alone = np.zeros((1, line.shape[0], padded_width(line.shape[1]), 1), np.float32)
        alone[0, :, : line.shape[1], 0] = line
        expected = keras_model([alone, widths[row: row + 1]], training=False).numpy()[0]
        frames = frames_for(line.shape[1])
        if expected.shape[0] != frames or together.shape[2] != expected.shape[1]:
            raise ParityError(f"ONNX output {together.shape} does not fit Keras {expected.shape}")
        worst = max(worst, float(np.abs(together[row, :frames] - expected).max()))
    return worst


def assert_parity(keras_model, onnx_bytes: bytes, lines: list[np.ndarray]) -> float:
    """``check_parity``, raising ``ParityError`` beyond the tolerance."""
    worst = check_parity(keras_model, onnx_bytes, lines)
    if not worst <= PARITY_TOLERANCE:
        raise ParityError(f"ONNX and Keras disagree by {worst:.3g} (tolerance {PARITY_TOLERANCE})")
    return worst


def export_run(run_dir: Path, out: Path, name: str, version: str, parity_lines: list[np.ndarray],
               checkpoint: str = "best.keras") -> ModelInfo:
    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    config = ModelConfig.from_dict(state["model_config"])
    model = load_model(run_dir / checkpoint)
    data_args = state.get("args", {})
    # The figures are the exported checkpoint's: the last epoch's for last.keras (a run whose epoch count
    # was fixed in advance, so the held-out book does not pick the epoch), the best epoch's otherwise.
    if checkpoint == "last.keras" and state.get("history"):
        epoch, validation_cer = state["history"][-1]["epoch"], state["history"][-1]["val_cer"]
    else:
        epoch, validation_cer = state.get("best_epoch"), state.get("best_cer")
    info = ModelInfo(
        alphabet=Alphabet(state["alphabet"]),
        input_height=config.height,
        width_stride=WIDTH_STRIDE,
        name=name,
        version=version,
        training_data=json.dumps(describe_data(data_args), ensure_ascii=False),
        validation_cer=validation_cer,
        extra={
            "architecture": json.dumps(config.to_dict()),
            "parameters": str(model.count_params()),
            "best_epoch": str(state.get("best_epoch")),
            "exported_epoch": str(epoch),
            "exported_checkpoint": checkpoint,
            "training_seconds": str(round(state.get("seconds", 0.0))),
            "training_machine": state.get("machine", ""),
        },
    )
    write_model(model, config, info, out, parity_lines)
    return info


def reexport_model(keras_path: Path, out: Path, parity_lines: list[np.ndarray]) -> ModelInfo:
    """Export a shipped checkpoint again in today's graph, keeping the metadata of the ONNX model
    it was exported as (``keras_path`` with ``.onnx``), e.g. after a change of the inference graph."""
    import onnx

    from .checkpoint import read_info

    alphabet, config = read_info(keras_path)
    model = load_model(keras_path)
    previous = keras_path.with_suffix(".onnx")
    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(str(previous)).metadata_props})
    if info.alphabet != alphabet:
        raise ValueError(f"{keras_path} and {previous} have different alphabets")
    write_model(model, config, info, out, parity_lines)
    return info


def write_model(model, config: ModelConfig, info: ModelInfo, out: Path, parity_lines: list[np.ndarray]) -> None:
    """NAME.onnx (parity-checked first), NAME.keras (self-describing) and NAME.json."""
    info.extra["exported"] = datetime.now(UTC).isoformat(timespec="seconds")
    info.extra["inputs"] = "image (batch, height, width, 1) float32 ink 1 paper 0, zero-padded; widths (batch,) int32"
    info.extra["batch_independent"] = "true"  # padding is masked: readers may batch lines of any widths
    proto = convert(model, config, info.alphabet.num_classes, check_lines=parity_lines)
    attach_metadata(proto, info)
    onnx_bytes = proto.SerializeToString()
    if parity_lines:
        worst = assert_parity(model, onnx_bytes, parity_lines)
        print(f"parity: Keras (each line alone) vs onnxruntime (one padded batch) on {len(parity_lines)} lines, "
              f"max |difference| = {worst:.2e}")
    else:
        log.warning("no lines for the parity check: exported without it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".onnx.tmp", delete=False) as tmp:
        tmp.write(onnx_bytes)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it private; servers run as other users
    os.replace(tmp.name, out)  # a watcher never sees half a model
    save_model(model, out.with_suffix(".keras"), info.alphabet, config)  # today's graph, self-describing
    summary = info.summary()
    summary["alphabet"] = list(info.alphabet.characters)
    out.with_suffix(".json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")


def quantize_int8(float_path: Path, out: Path, parity_lines: list[np.ndarray]) -> float:
    """Dynamic int8 weights for the LSTMs and matrix products (convolutions stay float).

    The LSTMs are most of the inference time and quantize well; int8
    convolutions were measured slower here, so they are left alone. Returns the
    CER between the float and the int8 model's readings of ``parity_lines``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from recognition.metrics import ErrorCounter
    from recognition.recognizer import Recognizer

    tmp = out.with_suffix(".onnx.tmp")
    quantize_dynamic(str(float_path), str(tmp), op_types_to_quantize=["LSTM", "MatMul"],
                     weight_type=QuantType.QInt8)
    proto = simplified(onnx.load(str(tmp)), parity_lines)  # a float model exported before the simplification
    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(str(float_path)).metadata_props})
    info.name = f"{info.name}-int8"
    info.extra["quantization"] = "dynamic int8 weights: LSTM, MatMul"
    # Dynamic quantisation scales the activations by the range of the whole run, so a
    # line's output would depend on its batch neighbours: readers run such models per line.
    info.extra["batch_independent"] = "false"
    attach_metadata(proto, info)
    onnx.save(proto, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    reference, quantized = Recognizer(float_path), Recognizer(out)
    counter = ErrorCounter()
    for ref, got in zip(reference.recognize_lines(parity_lines), quantized.recognize_lines(parity_lines)):
        counter.add(ref.text, got.text)
    return counter.cer


def describe_data(run_args: dict) -> dict:
    """Which sources, splits and line counts the run saw (from the shard manifests, re-split by book for a run
    given ``--val-source``)."""
    from recognition.line_data import matches_source

    from .shards import MANIFEST

    def splits(folder: str) -> dict:
        path = Path(folder) / MANIFEST
        if not path.exists():
            return {"folder": folder}
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not val_source:
            return {split: info["sources"] for split, info in manifest["splits"].items()}
        # A run that re-split the folder by book (train_torch --val-source) trained on every split but the
        # held-out book's lines and validated on those: the manifest's own splits would name the held-out
        # book among the training sources.
        resplit: dict[str, dict] = {"train": {}, "val": {}}
        for info in manifest["splits"].values():
            for source, count in info["sources"].items():
                target = resplit["val" if matches_source(source, [val_source]) else "train"]
                target[source] = target.get(source, 0) + count
        return resplit

    val_source = run_args.get("val_source")

    return {"real": [splits(d) for d in run_args.get("data", [])],
            "synthetic": [splits(d) for d in run_args.get("synth", [])],
            "synth_ratio": run_args.get("synth_ratio")}


def parity_lines_from(data_dirs: list[str], count: int) -> list[np.ndarray]:
    lines = []
    for d in data_dirs:
        for split in ("val", "train"):
            lines.extend(l.image.astype(np.float32) / 255.0 for l in read_split(Path(d), split))
            if len(lines) >= count:
                return lines[:count]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a training run folder (best.keras + state.json), or a shipped "
                                        "models/NAME.keras to export again in today's graph (metadata kept)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--name", help="model name (default: the file's stem)")
    parser.add_argument("--version", default=datetime.now(UTC).strftime("%Y.%m.%d"))
    parser.add_argument("--checkpoint", default="best.keras", help="which checkpoint of the run")
    parser.add_argument("--parity-data", nargs="*", help="preprocessed data folders for the parity check "
                                                          "(default: the run's --data)")
    parser.add_argument("--parity-lines", type=int, default=16)
    parser.add_argument("--int8", action="store_true",
                        help="also write NAME-int8.onnx (dynamic int8 LSTM/MatMul weights, ~2x faster on CPU)")
    parser.add_argument("--calibrate", nargs="+", metavar="LINES",
                        help="line folders or manifests holding the held-out book: fit the confidence calibration "
                             "on it and store it in each model written (training.calibrate)")
    parser.add_argument("--calibration-sources", nargs="+", metavar="BOOK",
                        help="the held-out book(s) within --calibrate; never a book the model trained on")
    args = parser.parse_args(argv)
    if args.calibrate and not args.calibration_sources:
        parser.error("--calibrate needs --calibration-sources (the held-out book)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_dir, out = Path(args.run_dir), Path(args.out)
    if run_dir.suffix == ".keras":
        lines = parity_lines_from([d for d in args.parity_data or [] if Path(d).exists()], args.parity_lines)
        info = reexport_model(run_dir, out, lines)
    else:
        state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
        data_dirs = args.parity_data if args.parity_data is not None else state.get("args", {}).get("data", [])
        lines = parity_lines_from([d for d in data_dirs if Path(d).exists()], args.parity_lines)
        info = export_run(run_dir, out, args.name or out.stem, args.version, lines, args.checkpoint)
    if args.int8:
        int8_path = out.with_name(out.stem + "-int8.onnx")
        difference = quantize_int8(out, int8_path, lines)
        print(f"wrote {int8_path}: its readings of {len(lines)} lines differ from the float model's by "
              f"{100 * difference:.2f}% CER")
    if args.calibrate:
        from . import calibrate

        for model in [out] + ([out.with_name(out.stem + "-int8.onnx")] if args.int8 else []):
            calibrate.main([str(model), *args.calibrate, "--sources", *args.calibration_sources,
                            "--out", str(out.parent)])
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB), {out.with_suffix('.keras')}, {out.with_suffix('.json')}; "
          f"alphabet {len(info.alphabet)}, validation CER {info.validation_cer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
