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


# -- guards: a graph not shaped as exported raises GraphPatternError instead of being rewritten wrongly ----


def _model(nodes, inputs, initializers=(), out_rank=3):
    """A graph of ``nodes`` from ``inputs`` ((name, type, rank)) to the float tensor "out"."""
    from onnx import TensorProto, helper

    def value(name, kind, rank):
        return helper.make_tensor_value_info(name, kind, [f"{name}_{i}" for i in range(rank)])

    graph = helper.make_graph(nodes, "g", [value(*i) for i in inputs], [value("out", TensorProto.FLOAT, out_rank)],
                              initializer=[onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # onnxruntime reads it


def _frames_reshape(perm, allowzero=0):
    """Reshape(Transpose(x, perm), [dim 0 of Shape(x), -1, 4]): dim 0 of x is dim 0 of the reshaped
    tensor only if perm[0] == 0 (no perm: Reshape(x, ...) itself)."""
    from onnx import TensorProto, helper

    first = helper.make_node("Transpose", ["x"], ["t"], perm=perm) if perm else helper.make_node("Relu", ["x"], ["t"])
    nodes = [first,
             helper.make_node("Shape", ["x" if perm else "t"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "one"], ["first"]),
             helper.make_node("Concat", ["first", "minus_one", "four"], ["frames_shape"], axis=0),
             helper.make_node("Reshape", ["t", "frames_shape"], ["out"], allowzero=allowzero)]
    return _model(nodes, [("x", TensorProto.FLOAT, 3)],
                  [("zero", np.array([0], np.int64)), ("one", np.array([1], np.int64)),
                   ("minus_one", np.array([-1], np.int64)), ("four", np.array([4], np.int64))])


def test_a_frames_shape_from_another_dim_of_a_transposed_tensor_is_refused():
    from training.graph_simplification import GraphPatternError

    assert simplify_graph(_frames_reshape([0, 2, 1]))["constant frame shapes"] == 1  # dim 0 stays dim 0
    assert simplify_graph(_frames_reshape(None))["constant frame shapes"] == 1  # Shape of the reshaped tensor
    with pytest.raises(GraphPatternError, match="dim 0"):
        simplify_graph(_frames_reshape([1, 0, 2]))  # x's dim 0 is the reshaped tensor's dim 1
    with pytest.raises(GraphPatternError, match="allowzero"):
        simplify_graph(_frames_reshape([0, 2, 1], allowzero=1))


def _batch_major_bilstm():
    from onnx import TensorProto, helper

    units, features = 2, 3
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["out"], direction="bidirectional", hidden_size=units,
                              layout=1)]
    return _model(nodes, [("x", TensorProto.FLOAT, 3)], out_rank=4, initializers=
                  [("W", np.zeros((2, 4 * units, features), np.float32)),
                   ("R", np.zeros((2, 4 * units, units), np.float32))])


def test_a_batch_major_lstm_is_refused():
    from training.graph_simplification import GraphPatternError

    with pytest.raises(GraphPatternError, match="layout"):
        simplify_graph(_batch_major_bilstm())


def _masked_convolution(pads):
    """image -> Conv (width kernel 3, these pads) -> Relu -> ColumnMask of stride 1 as tf2onnx writes it."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Reshape", ["image", "nchw"], ["x"]),
             helper.make_node("Conv", ["x", "kernel"], ["conv"], kernel_shape=[3, 3], pads=pads),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Transpose", ["relu"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Add", ["widths", "offset"], ["rounded_up"]),
             helper.make_node("Div", ["rounded_up", "stride"], ["valid"]),
             helper.make_node("Cast", ["valid"], ["mask"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["nhwc", "mask"], ["masked"]),
             helper.make_node("Transpose", ["masked"], ["out"], perm=[0, 3, 1, 2])]
    return _model(nodes, [("image", TensorProto.FLOAT, 4), ("widths", TensorProto.INT32, 1)],
                  [("nchw", np.array([0, 1, 8, -1], np.int64)), ("kernel", np.zeros((1, 1, 3, 3), np.float32)),
                   ("offset", np.array(0, np.int32)), ("stride", np.array(1, np.int32))])


def test_a_mask_on_a_convolution_that_does_not_pad_same_is_refused():
    """One mask per stride is built from the first tensor's columns: right only if every tensor of that
    stride has ceil(width / stride) columns, which a "valid" convolution breaks."""
    from training.graph_simplification import GraphPatternError

    assert simplify_graph(_masked_convolution([1, 1, 1, 1]))["column masks"] == 1
    with pytest.raises(GraphPatternError, match="same"):
        simplify_graph(_masked_convolution([1, 0, 1, 0]))


# -- the command line ---------------------------------------------------------------------------------------


def test_the_command_line_refuses_to_rewrite_on_too_few_lines(rendered_books, tmp_path, capsys):
    from training.graph_simplification import main

    model = tmp_path / "model.onnx"
    model.write_bytes(_frames_reshape([0, 2, 1]).SerializeToString())  # one the rewrite would change
    before = model.read_bytes()
    assert main([str(model), "--check", str(rendered_books), "--sources", "no_such_book"]) != 0
    assert "only 0 lines" in capsys.readouterr().err
    assert main([str(model), "--check", str(rendered_books), "--lines", "7"]) != 0
    assert "only 7 lines" in capsys.readouterr().err
    assert model.read_bytes() == before


def test_one_bad_model_does_not_stop_the_others(rendered_books, tmp_path, capsys):
    from training.graph_simplification import main

    batch_major, garbage, shipped = tmp_path / "batch-major.onnx", tmp_path / "garbage.onnx", tmp_path / "ok.onnx"
    batch_major.write_bytes(_batch_major_bilstm().SerializeToString())
    garbage.write_bytes(b"\x08\x07not a model at all")
    no_metadata = tmp_path / "no-metadata.onnx"  # the rewrite applies, but no reader can prepare its lines
    no_metadata.write_bytes(_frames_reshape(None).SerializeToString())
    shipped.write_bytes((MODELS / "arabic-crnn-swift.onnx").read_bytes())
    before = {p: p.read_bytes() for p in (batch_major, garbage, no_metadata, shipped)}
    assert main([str(batch_major), str(garbage), str(no_metadata), str(shipped),
                 "--check", str(rendered_books / "book_naskh")]) == 1
    out, err = capsys.readouterr()
    assert f"{batch_major}: NOT rewritten: GraphPatternError" in err and "layout" in err
    assert f"{garbage}: NOT rewritten" in err
    assert f"{no_metadata}: NOT rewritten: ModelMetadataError" in err
    assert f"{shipped}: already simplified" in out  # reached after the bad ones
    assert {p: p.read_bytes() for p in before} == before


def test_export_keeps_the_unsimplified_graph_when_the_rewrite_does_not_apply():
    from training.export import simplified

    batch_major = _batch_major_bilstm()
    assert simplified(batch_major, []) is batch_major
    frames = _frames_reshape([0, 2, 1])
    assert "Shape" not in [n.op_type for n in simplified(frames, []).graph.node]
    assert "Shape" in [n.op_type for n in frames.graph.node]  # a simplified copy; the original is kept
