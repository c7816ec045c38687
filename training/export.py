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
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recognition.alphabet import Alphabet
from recognition.metadata import ModelInfo

from .model import WIDTH_STRIDE, ModelConfig
from .shards import read_split

log = logging.getLogger("training.export")
PARITY_TOLERANCE = 1e-3


class ParityError(RuntimeError):
    pass


def convert(keras_model, height: int, opset: int = 17):
    """Keras -> ONNX ModelProto with the input named ``image`` (readers ask the session for the output name)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, height, None, 1), tf.float32, name="image")]
    proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=opset)
    return proto


def attach_metadata(proto, info: ModelInfo) -> None:
    del proto.metadata_props[:]
    for key, value in info.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"{info.name} {info.version}: Arabic text-line recogniser (CTC)"


def check_parity(keras_model, onnx_bytes: bytes, lines: list[np.ndarray]) -> float:
    """Largest absolute difference of the softmax outputs on ``lines``."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    worst = 0.0
    for line in lines:
        width = -(-line.shape[1] // WIDTH_STRIDE) * WIDTH_STRIDE
        x = np.zeros((1, line.shape[0], width, 1), np.float32)
        x[0, :, : line.shape[1], 0] = line
        expected = keras_model(x, training=False).numpy()
        got = session.run([output_name], {input_name: x})[0]
        if got.shape != expected.shape:
            raise ParityError(f"ONNX output shape {got.shape} != Keras {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def assert_parity(keras_model, onnx_bytes: bytes, lines: list[np.ndarray]) -> float:
    """``check_parity``, raising ``ParityError`` beyond the tolerance."""
    worst = check_parity(keras_model, onnx_bytes, lines)
    if not worst <= PARITY_TOLERANCE:
        raise ParityError(f"ONNX and Keras disagree by {worst:.3g} (tolerance {PARITY_TOLERANCE})")
    return worst


def export_run(run_dir: Path, out: Path, name: str, version: str, parity_lines: list[np.ndarray],
               checkpoint: str = "best.keras") -> ModelInfo:
    import keras

    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    config = ModelConfig.from_dict(state["model_config"])
    model = keras.models.load_model(run_dir / checkpoint, compile=False)
    data_args = state.get("args", {})
    info = ModelInfo(
        alphabet=Alphabet(state["alphabet"]),
        input_height=config.height,
        width_stride=WIDTH_STRIDE,
        name=name,
        version=version,
        training_data=json.dumps(describe_data(data_args), ensure_ascii=False),
        validation_cer=state.get("best_cer"),
        extra={
            "architecture": json.dumps(config.to_dict()),
            "parameters": str(model.count_params()),
            "best_epoch": str(state.get("best_epoch")),
            "training_seconds": str(round(state.get("seconds", 0.0))),
            "training_machine": state.get("machine", ""),
            "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    proto = convert(model, config.height)
    attach_metadata(proto, info)
    onnx_bytes = proto.SerializeToString()
    if parity_lines:
        worst = assert_parity(model, onnx_bytes, parity_lines)
        print(f"parity: Keras vs onnxruntime on {len(parity_lines)} lines, max |difference| = {worst:.2e}")
    else:
        log.warning("no lines for the parity check: exported without it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".onnx.tmp", delete=False) as tmp:
        tmp.write(onnx_bytes)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes it private; servers run as other users
    os.replace(tmp.name, out)  # a watcher never sees half a model
    shutil.copyfile(run_dir / checkpoint, out.with_suffix(".keras"))
    summary = info.summary()
    summary["alphabet"] = list(info.alphabet.characters)
    out.with_suffix(".json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return info


def quantize_int8(float_path: Path, out: Path, parity_lines: list[np.ndarray]) -> float:
    """Dynamic int8 weights for the LSTMs and matrix products (convolutions stay float).

    The LSTMs are most of the inference time and quantize well; int8
    convolutions were measured slower here, so they are left alone. Returns the
    CER between the float and the int8 model's readings of ``parity_lines``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from recognition.metrics import ErrorCounter
    from recognition.onnx_recognizer import OnnxRecognizer

    tmp = out.with_suffix(".onnx.tmp")
    quantize_dynamic(str(float_path), str(tmp), op_types_to_quantize=["LSTM", "MatMul"],
                     weight_type=QuantType.QInt8)
    proto = onnx.load(str(tmp))
    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(str(float_path)).metadata_props})
    info.name = f"{info.name}-int8"
    info.extra["quantization"] = "dynamic int8 weights: LSTM, MatMul"
    attach_metadata(proto, info)
    onnx.save(proto, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    reference, quantized = OnnxRecognizer(float_path), OnnxRecognizer(out)
    counter = ErrorCounter()
    for ref, got in zip(reference.recognize_arrays(parity_lines), quantized.recognize_arrays(parity_lines)):
        counter.add(ref.text, got.text)
    return counter.cer


def describe_data(run_args: dict) -> dict:
    """Which sources, splits and line counts the run saw (from the shard manifests)."""
    from .shards import MANIFEST

    def splits(folder: str) -> dict:
        path = Path(folder) / MANIFEST
        if not path.exists():
            return {"folder": folder}
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return {split: info["sources"] for split, info in manifest["splits"].items()}

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
    parser.add_argument("run_dir", help="a training run folder (best.keras + state.json)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--name", help="model name (default: the file's stem)")
    parser.add_argument("--version", default=datetime.now(UTC).strftime("%Y.%m.%d"))
    parser.add_argument("--checkpoint", default="best.keras", help="which checkpoint of the run")
    parser.add_argument("--parity-data", nargs="*", help="preprocessed data folders for the parity check "
                                                          "(default: the run's --data)")
    parser.add_argument("--parity-lines", type=int, default=16)
    parser.add_argument("--int8", action="store_true",
                        help="also write NAME-int8.onnx (dynamic int8 LSTM/MatMul weights, ~2x faster on CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_dir, out = Path(args.run_dir), Path(args.out)
    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    data_dirs = args.parity_data if args.parity_data is not None else state.get("args", {}).get("data", [])
    lines = parity_lines_from([d for d in data_dirs if Path(d).exists()], args.parity_lines)
    info = export_run(run_dir, out, args.name or out.stem, args.version, lines, args.checkpoint)
    if args.int8:
        int8_path = out.with_name(out.stem + "-int8.onnx")
        difference = quantize_int8(out, int8_path, lines)
        print(f"wrote {int8_path}: its readings of {len(lines)} lines differ from the float model's by "
              f"{100 * difference:.2f}% CER")
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB), {out.with_suffix('.keras')}, {out.with_suffix('.json')}; "
          f"alphabet {len(info.alphabet)}, validation CER {info.validation_cer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
