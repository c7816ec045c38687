"""The simplified inference graph computes what tf2onnx's graph computes, bit for bit, in fewer nodes."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from training.graph_simplification import differing_outputs, simplify_graph  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "models"
SHIPPED = ["arabic-crnn-v2", "arabic-crnn-v2-int8", "arabic-crnn-swift", "arabic-crnn-swift-int8"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_models_are_simplified(name):
    proto = onnx.load(str(MODELS / f"{name}.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert not any(simplify_graph(proto).values()), "nothing left to rewrite"
    # One mask per stride (2 and 4), applied where the convolutions are; no gathers of shapes
    assert ops.count("Range") == 2 and ops.count("Less") == 2 and "Gather" not in ops and "Expand" not in ops
    assert len(ops) < 60


def lines_of_many_widths(height: int, seed: int = 0) -> list[np.ndarray]:
    """Ink-like random lines, as wide as 1 pixel and as wide as a long line, so masks cut everywhere."""
    rng = np.random.default_rng(seed)
    widths = [1, 2, 3, 4, 5, 7, 13, 64, 65, 66, 67, 250, 333, 700, 1201]
    return [(rng.random((height, w)) < 0.3).astype(np.float32) * rng.random((height, w)).astype(np.float32)
            for w in widths]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny", "fast", "swift"])
def test_simplified_graphs_give_the_same_outputs_bit_for_bit(preset, tmp_path):
    """For each layout (one BiLSTM, a projection before it, two blocks of pools), float and int8: every line
    alone and in padded batches of lines of other widths reads the same in every bit."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from training.export import convert
    from training.model import PRESETS, WIDTH_STRIDE, build_model

    config = PRESETS[preset]
    raw = convert(build_model(config, num_classes=12), config, 12, simplify=False)
    lines = lines_of_many_widths(config.height)
    simplified = onnx.load_from_string(raw.SerializeToString())
    report = simplify_graph(simplified)
    assert report["column masks"] == len(config.stem_channels) + len(config.block_channels)
    assert report["zero initial states"] == 2 * len(config.lstm_units)
    assert report["BiLSTM joins"] == len(config.lstm_units)
    assert report["unflattened products"] == 1 + bool(config.projection)
    assert len(simplified.graph.node) < len(raw.graph.node) / 2
    assert differing_outputs(raw.SerializeToString(), simplified.SerializeToString(), lines, WIDTH_STRIDE, 4) == 0

    (tmp_path / "raw.onnx").write_bytes(raw.SerializeToString())
    quantize_dynamic(str(tmp_path / "raw.onnx"), str(tmp_path / "int8.onnx"), op_types_to_quantize=["LSTM", "MatMul"],
                     weight_type=QuantType.QInt8)
    int8 = onnx.load(str(tmp_path / "int8.onnx"))
    simplified_int8 = onnx.load(str(tmp_path / "int8.onnx"))
    simplify_graph(simplified_int8)
    assert differing_outputs(int8.SerializeToString(), simplified_int8.SerializeToString(), lines, WIDTH_STRIDE, 4) == 0
