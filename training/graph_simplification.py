"""Simplify an exported line model's ONNX graph without changing a single output value.

    python -m training.graph_simplification models/arabic-crnn-v2.onnx models/arabic-crnn-v2-int8.onnx \
        --check ../shared/datasets/openiti-gs

tf2onnx writes each Keras ``ColumnMask`` as some fifteen shape operations in
channels-last order between two transposes, the LSTMs' zero initial states as
an ``Expand`` of the batch size, the two directions of each BiLSTM as slices,
squeezes and a concat, and the logits' ``Tensordot`` as a flatten, a matrix
product and an unflatten whose shapes are computed at run time. At batch 1,
one thread, those small operations cost about as much as the BiLSTM of a
short line. ``simplify_graph`` rewrites them into what they compute:

* one column mask per stride, ``column < ceil(width / stride)``, built once
  in the convolutions' own (NCHW) layout and applied there, without the
  transposes around it;
* a mask right before a height-only max pool (kernel and stride ``(k, 1)``)
  of a ReLU output moves after it, onto a k times smaller tensor:
  ``max(m a, m b) = m max(a, b)`` for ``m`` in {0, 1} and ``a, b >= 0``, and
  onnxruntime can then pool straight from the convolution in its blocked layout;
* LSTM initial states that are all zeros are left out (the ONNX default);
* a BiLSTM's two directions are joined by one transpose and reshape;
* the frames' reshape gets a constant shape, and the logits are one matrix
  product over (batch, frames, features) instead of flatten, product, unflatten.

Every multiplication, sum and comparison the network does on real values is
the same operation on the same values in the same order, so the outputs are
bit-identical; ``--check`` runs the old and the new graph on real lines, alone
and in padded batches, and refuses to write a file whose outputs differ in any
bit. The metadata (``metadata_props``), opsets and initializers are kept.
Each rewrite checks what it relies on (every convolution pads "same", a
reshape's leading 0 is its input's batch, LSTMs are time-major) and raises
``GraphPatternError`` on a graph shaped otherwise; ``training.export`` then
keeps the unsimplified graph, as it does when its own lines read differently.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

WIDTHS_INPUT = "widths"
LSTM_OPS = ("LSTM", "DynamicQuantizeLSTM")
CHECK_BATCH = 8  # lines per padded batch in the CLI's check


class GraphPatternError(ValueError):
    """The graph is not shaped as the exporter writes it; nothing is rewritten."""


class _Graph:
    """Producer and consumer look-ups over a GraphProto, rebuilt after each rewrite."""

    def __init__(self, graph):
        self.graph = graph
        self.refresh()

    def refresh(self) -> None:
        self.producer = {}
        self.consumers = defaultdict(list)
        for node in self.graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            from onnx import helper

            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
        return None

    def attribute(self, node, name: str, default=None):
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def only_consumer(self, name: str):
        consumers = self.consumers.get(name, [])
        if len(consumers) != 1 or name in self.outputs:
            return None
        return consumers[0]

    def ancestors(self, name: str, through_shapes: bool = True) -> list:
        """The nodes ``name`` is computed from; without ``through_shapes``, not what a Shape node reads."""
        seen, stack, found = set(), [name], []
        while stack:
            node = self.producer.get(stack.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            found.append(node)
            if through_shapes or node.op_type != "Shape":
                stack.extend(i for i in node.input if i)
        return found

    def unique_name(self, stem: str) -> str:
        taken = set(self.producer) | set(self.initializers) | {i.name for i in self.graph.input}
        name, n = stem, 1
        while name in taken:
            name, n = f"{stem}_{n}", n + 1
        return name

    def replace_uses(self, old: str, new: str) -> None:
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new

    def remove(self, nodes) -> None:
        doomed = {id(n) for n in nodes}
        kept = [n for n in self.graph.node if id(n) not in doomed]
        del self.graph.node[:]
        self.graph.node.extend(kept)
        self.refresh()

    def add_initializer(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique_name(stem)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.initializers[name] = self.graph.initializer[-1]
        return name


def _mask_stride(g: _Graph, mask_input: str) -> int | None:
    """The stride s of a ColumnMask (its valid columns are ``(widths + s - 1) // s``), or None."""
    strides = set()
    for node in g.ancestors(mask_input, through_shapes=False):
        if node.op_type != "Div":
            continue
        add = g.producer.get(node.input[0])
        divisor = g.constant(node.input[1])
        if add is None or add.op_type != "Add" or WIDTHS_INPUT not in add.input or divisor is None:
            continue
        offset = g.constant(add.input[1] if add.input[0] == WIDTHS_INPUT else add.input[0])
        if offset is None or divisor.size != 1 or offset.size != 1 or int(offset) != int(divisor) - 1:
            raise GraphPatternError(f"a column mask divides widths + {offset} by {divisor}")
        strides.add(int(divisor))
    return strides.pop() if len(strides) == 1 else None


def _build_column_mask(g: _Graph, stride: int, like: str, dtype: int) -> tuple[list, str]:
    """Nodes computing the (batch, 1, 1, columns) mask ``column < ceil(widths / stride)`` for NCHW ``like``."""
    from onnx import TensorProto, helper

    prefix = g.unique_name(f"column_mask_s{stride}")
    offset = g.add_initializer(f"{prefix}/offset", np.array(stride - 1, np.int32))
    divisor = g.add_initializer(f"{prefix}/stride", np.array(stride, np.int32))
    per_line = g.add_initializer(f"{prefix}/per_line_shape", np.array([-1, 1, 1, 1], np.int64))
    zero = g.add_initializer(f"{prefix}/zero", np.array(0, np.int32))
    one = g.add_initializer(f"{prefix}/one", np.array(1, np.int32))
    nodes = [
        helper.make_node("Add", [WIDTHS_INPUT, offset], [f"{prefix}/rounded_up"], name=f"{prefix}/add"),
        helper.make_node("Div", [f"{prefix}/rounded_up", divisor], [f"{prefix}/valid"], name=f"{prefix}/div"),
        helper.make_node("Reshape", [f"{prefix}/valid", per_line], [f"{prefix}/valid_per_line"],
                         name=f"{prefix}/per_line"),
        helper.make_node("Shape", [like], [f"{prefix}/columns_1d"], name=f"{prefix}/shape", start=3, end=4),
        helper.make_node("Squeeze", [f"{prefix}/columns_1d"], [f"{prefix}/columns"], name=f"{prefix}/squeeze"),
        helper.make_node("Cast", [f"{prefix}/columns"], [f"{prefix}/columns_i32"], name=f"{prefix}/cast_columns",
                         to=TensorProto.INT32),
        helper.make_node("Range", [zero, f"{prefix}/columns_i32", one], [f"{prefix}/column"], name=f"{prefix}/range"),
        helper.make_node("Less", [f"{prefix}/column", f"{prefix}/valid_per_line"], [f"{prefix}/keep"],
                         name=f"{prefix}/less"),
        helper.make_node("Cast", [f"{prefix}/keep"], [f"{prefix}/mask"], name=f"{prefix}/cast", to=dtype),
    ]
    return nodes, f"{prefix}/mask"


IMAGE_INPUT = "image"
_WIDTH_KEEPING_OPS = ("Relu", "Mul", "Add", "BatchNormalization", "Identity")


def _columns_stride(g: _Graph, activation: str) -> int:
    """The s such that ``activation`` (NCHW) has ``ceil(image width / s)`` columns, proved from the path
    from the image: every convolution pads "same" (``ceil(w / stride)`` columns, and ceil(ceil(w / a) / b)
    = ceil(w / ab)), pools keep the width, the rest is elementwise or a layout change. A mask built from one
    tensor's columns then fits every tensor of the same stride. Raises ``GraphPatternError`` otherwise."""
    from_image = {IMAGE_INPUT}
    for node in g.graph.node:  # topologically sorted: what the image's values (not its shape) flow into
        if node.op_type != "Shape" and any(i in from_image for i in node.input):
            from_image.update(node.output)
    memo: dict[str, int] = {IMAGE_INPUT: 1}

    def stride_of(name: str) -> int:
        if name in memo:
            return memo[name]
        node = g.producer.get(name)
        if node is None:
            raise GraphPatternError(f"{name} comes from the image through no node")
        strides = {stride_of(i) for i in node.input if i in from_image}
        if len(strides) != 1:
            raise GraphPatternError(f"{node.name} joins tensors of different column strides {strides}")
        stride = strides.pop()
        if node.op_type == "Conv":
            auto_pad = g.attribute(node, "auto_pad", b"NOTSET")
            kernel, dilation = g.attribute(node, "kernel_shape", [0, 0]), g.attribute(node, "dilations", [1, 1])
            step = list(g.attribute(node, "strides", [1, 1]))[1]
            pads = list(g.attribute(node, "pads", [0, 0, 0, 0]))
            same = auto_pad in (b"SAME_UPPER", b"SAME_LOWER") or (
                auto_pad == b"NOTSET" and step == 1 and len(kernel) == 2
                and pads[1] + pads[3] == dilation[1] * (kernel[1] - 1))
            if not same:
                raise GraphPatternError(f"the convolution {node.name} does not pad \"same\" along the width")
            stride *= step
        elif node.op_type in ("MaxPool", "AveragePool"):
            if list(g.attribute(node, "kernel_shape", [0, 0]))[1:] != [1] \
                    or list(g.attribute(node, "strides", [1, 1]))[1:] != [1] \
                    or any(g.attribute(node, "pads", [0, 0, 0, 0])) \
                    or g.attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
                raise GraphPatternError(f"the pool {node.name} changes the width")
        elif node.op_type == "Transpose":
            if list(g.attribute(node, "perm", [])) not in ([0, 2, 3, 1], [0, 3, 1, 2]):
                raise GraphPatternError(f"{node.name} is not a transpose between NHWC and NCHW")
        elif node.op_type == "Reshape":  # the (batch, height, width, 1) image as (batch, 1, height, width)
            shape = g.constant(node.input[1])
            if node.input[0] != IMAGE_INPUT or shape is None or g.attribute(node, "allowzero", 0) \
                    or list(shape[[0, 1, 3]]) != [0, 1, -1]:
                raise GraphPatternError(f"the reshape {node.name} may change the width")
        elif node.op_type not in _WIDTH_KEEPING_OPS:
            raise GraphPatternError(f"cannot tell how {node.op_type} {node.name} changes the width")
        memo[name] = stride
        return stride

    return stride_of(activation)


def share_column_masks(g: _Graph) -> int:
    """Each ColumnMask (Transpose to NHWC, Mul by a mask from ``widths``, Transpose back) -> one Mul in NCHW
    by a mask built once per stride. Returns how many masks were rewritten."""
    from onnx import TensorProto, helper

    masks: dict[int, str] = {}
    rewritten = 0
    for mul in list(g.graph.node):
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        to_nhwc = next((g.producer.get(i) for i in mul.input if g.producer.get(i) is not None
                        and g.producer[i].op_type == "Transpose"
                        and list(g.attribute(g.producer[i], "perm", [])) == [0, 2, 3, 1]), None)
        back = g.only_consumer(mul.output[0])
        if to_nhwc is None or back is None or back.op_type != "Transpose" \
                or list(g.attribute(back, "perm", [])) != [0, 3, 1, 2]:
            continue
        mask_input = mul.input[1] if mul.input[0] == to_nhwc.output[0] else mul.input[0]
        if not any(WIDTHS_INPUT in n.input for n in g.ancestors(mask_input, through_shapes=False)):
            continue
        stride = _mask_stride(g, mask_input)
        if stride is None:
            raise GraphPatternError(f"cannot tell the stride of the column mask {mul.name}")
        activation = to_nhwc.input[0]
        if _columns_stride(g, activation) != stride:
            raise GraphPatternError(f"the mask {mul.name} of stride {stride} is not on a tensor of that stride")
        if stride not in masks:
            nodes, masks[stride] = _build_column_mask(g, stride, activation, TensorProto.FLOAT)
            position = list(g.graph.node).index(mul)
            for offset, node in enumerate(nodes):
                g.graph.node.insert(position + offset, node)
        new_mul = helper.make_node("Mul", [activation, masks[stride]], [back.output[0]], name=mul.name)
        position = list(g.graph.node).index(mul)
        g.graph.node.insert(position, new_mul)
        g.remove([mul, back])
        rewritten += 1
    return rewritten


def pool_before_mask(g: _Graph) -> int:
    """Relu -> Mul(mask) -> MaxPool over the height only  ->  Relu -> MaxPool -> Mul(mask)."""
    from onnx import helper

    moved = 0
    for mul in list(g.graph.node):
        if mul.op_type != "Mul" or not mul.input[1].endswith("/mask") or not mul.input[1].startswith("column_mask"):
            continue
        relu = g.producer.get(mul.input[0])
        pool = g.only_consumer(mul.output[0])
        if relu is None or relu.op_type != "Relu" or pool is None or pool.op_type != "MaxPool":
            continue
        kernel = list(g.attribute(pool, "kernel_shape", []))
        strides = list(g.attribute(pool, "strides", [1] * len(kernel)))  # ONNX's default stride is 1
        pads = list(g.attribute(pool, "pads", [0, 0, 0, 0]))
        auto_pad = g.attribute(pool, "auto_pad", b"NOTSET")
        if (len(kernel) != 2 or kernel[1] != 1 or strides != kernel or any(pads) or len(pool.output) != 1
                or auto_pad not in (b"NOTSET", b"VALID") or g.attribute(pool, "ceil_mode", 0)
                or list(g.attribute(pool, "dilations", [1, 1])) != [1, 1]):
            continue
        pooled = g.unique_name(f"{pool.output[0]}/unmasked")
        pool.input[0] = mul.input[0]
        final = pool.output[0]
        pool.output[0] = pooled
        new_mul = helper.make_node("Mul", [pooled, mul.input[1]], [final], name=mul.name)
        nodes = list(g.graph.node)
        g.graph.node.insert(nodes.index(pool) + 1, new_mul)
        g.remove([mul])
        moved += 1
    return moved


def _is_zero_fill(g: _Graph, name: str) -> bool:
    """True if ``name`` is all zeros whatever the inputs: Expand of a zero constant, reshaped or concatenated."""
    value = g.constant(name)
    if value is not None:
        return value.size > 0 and not np.any(value)
    node = g.producer.get(name)
    if node is None:
        return False
    if node.op_type == "Expand":
        return _is_zero_fill(g, node.input[0])
    if node.op_type in ("Unsqueeze", "Squeeze", "Reshape", "Identity"):
        return _is_zero_fill(g, node.input[0])
    if node.op_type == "Concat":
        return all(_is_zero_fill(g, i) for i in node.input)
    return False


def drop_zero_initial_states(g: _Graph) -> int:
    dropped = 0
    for lstm in g.graph.node:
        if lstm.op_type not in LSTM_OPS:
            continue
        for slot in (5, 6):  # initial_h, initial_c
            if len(lstm.input) > slot and lstm.input[slot] and _is_zero_fill(g, lstm.input[slot]):
                lstm.input[slot] = ""
                dropped += 1
    g.refresh()
    return dropped


def _slice_of_direction(g: _Graph, node, lstm_output: str) -> int | None:
    """Which direction a Slice(Y, [d], [d + 1], axes=[1]) -> Squeeze(axes=[1]) pair takes, or None."""
    if node.op_type != "Slice" or node.input[0] != lstm_output or len(node.input) < 4:
        return None
    starts, ends, axes = (g.constant(i) for i in node.input[1:4])
    steps = g.constant(node.input[4]) if len(node.input) > 4 and node.input[4] else np.array([1])
    if any(v is None for v in (starts, ends, axes)) or list(axes) != [1] or list(steps) != [1] \
            or int(ends[0]) != int(starts[0]) + 1:
        return None
    squeeze = g.only_consumer(node.output[0])
    if squeeze is None or squeeze.op_type != "Squeeze" or len(squeeze.input) < 2:
        return None
    axes = g.constant(squeeze.input[1])
    if axes is None or list(axes) != [1]:
        return None
    return int(starts[0])


def join_lstm_directions(g: _Graph) -> int:
    """Y (frames, 2, batch, units) -> slice, squeeze each direction, concat on the last axis
    ->  Transpose to (frames, batch, 2, units) and Reshape to (frames, batch, 2 units); a Transpose to
    batch-major after it is folded into the first."""
    from onnx import helper

    joined = 0
    for lstm in list(g.graph.node):
        if lstm.op_type not in LSTM_OPS or g.attribute(lstm, "direction", b"forward") != b"bidirectional":
            continue
        if g.attribute(lstm, "layout", 0) != 0:
            raise GraphPatternError(f"{lstm.name} is batch-major (layout 1): Y is not (frames, 2, batch, units)")
        y = lstm.output[0]
        slices = g.consumers.get(y, [])
        directions = [_slice_of_direction(g, s, y) for s in slices]
        if sorted(d for d in directions if d is not None) != [0, 1] or len(slices) != 2:
            continue
        squeezes = {d: g.only_consumer(s.output[0]) for d, s in zip(directions, slices)}
        concat = g.only_consumer(squeezes[0].output[0])
        if concat is None or concat.op_type != "Concat" or g.attribute(concat, "axis") not in (2, -1) \
                or list(concat.input) != [squeezes[0].output[0], squeezes[1].output[0]]:
            continue
        perm, result, removed = [0, 2, 1, 3], concat.output[0], [*slices, *squeezes.values(), concat]
        after = g.only_consumer(result)
        if after is not None and after.op_type == "Transpose" and list(g.attribute(after, "perm", [])) == [1, 0, 2]:
            perm, result = [2, 0, 1, 3], after.output[0]
            removed.append(after)
        shape = g.add_initializer(f"{lstm.name}/joined_shape", np.array([0, 0, -1], np.int64))
        transposed = g.unique_name(f"{lstm.name}/directions_inside")
        nodes = [helper.make_node("Transpose", [y], [transposed], name=f"{lstm.name}/transpose_directions", perm=perm),
                 helper.make_node("Reshape", [transposed, shape], [result], name=f"{lstm.name}/join_directions")]
        position = list(g.graph.node).index(lstm) + 1
        for offset, node in enumerate(nodes):
            g.graph.node.insert(position + offset, node)
        g.remove(removed)
        joined += 1
    return joined


def _shape_only_of(g: _Graph, name: str, source: str) -> bool:
    """True if ``name`` is computed from constants and the shape of ``source`` alone (or of the tensor that
    ``source`` transposes: tf2onnx reads a transposed shape as the input's shape gathered in the new order)."""
    producer = g.producer.get(source)
    shapes_of = {source} | ({producer.input[0]} if producer is not None and producer.op_type == "Transpose" else set())
    for node in g.ancestors(name, through_shapes=False):
        for i in node.input:
            if not i or g.constant(i) is not None or i in g.producer or node.op_type == "Shape":
                continue
            return False  # a graph input
        if node.op_type == "Shape" and node.input[0] not in shapes_of:
            return False
        if node.op_type not in ("Shape", "Cast", "Slice", "Gather", "Concat", "Unsqueeze", "Squeeze", "ReduceProd",
                                "Constant"):
            return False
    return True


class _LeadingDims:
    """Shape(source)[start:] of a source whose rank is unknown: ``("dim", i)`` items, indexed from 0 only."""

    def __init__(self, start: int):
        self.start = start

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [("dim", self.start + i) for i in range(key.start or 0, key.stop)]
        return ("dim", self.start + key)


def _dims_of(g: _Graph, name: str, source: str) -> list | None:
    """The 1-D int tensor ``name`` as a list of ints and ``("dim", i)`` (source's dim i), or None if it is
    not computed from constants and source's shape by shape bookkeeping alone (a Shape of the tensor that
    ``source`` transposes reads source's dims in the transpose's inverse order)."""
    value = g.constant(name)
    if value is not None:
        return [int(v) for v in np.atleast_1d(value)] if value.ndim <= 1 and value.dtype.kind == "i" else None
    node = g.producer.get(name)
    if node is None:
        return None
    if node.op_type in ("Cast", "Identity", "Squeeze", "Unsqueeze"):  # 1-element vectors and scalars alike
        return _dims_of(g, node.input[0], source)
    if node.op_type == "Shape":
        producer = g.producer.get(source)
        start, end = g.attribute(node, "start", 0), g.attribute(node, "end")
        if node.input[0] == source:  # its rank is not known here: the dims are only ever indexed from 0
            return _LeadingDims(start) if start >= 0 and end is None else None
        if producer is None or producer.op_type != "Transpose" or node.input[0] != producer.input[0]:
            return None
        perm = g.attribute(producer, "perm")
        if perm is None:
            return None
        order = [list(perm).index(j) for j in range(len(perm))]  # the input's dim j is source's dim order[j]
        return [("dim", i) for i in order][start:end]
    if node.op_type == "Gather":
        data, indices = _dims_of(g, node.input[0], source), g.constant(node.input[1])
        if data is None or indices is None or g.attribute(node, "axis", 0) != 0:
            return None
        picked = [int(i) for i in np.atleast_1d(indices)]
        if isinstance(data, _LeadingDims):
            return [data[i] for i in picked] if all(i >= 0 for i in picked) else None
        return [data[i] for i in picked] if all(-len(data) <= i < len(data) for i in picked) else None
    if node.op_type == "Slice":
        data = _dims_of(g, node.input[0], source)
        starts, ends = g.constant(node.input[1]), g.constant(node.input[2])
        axes = g.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else np.array([0])
        steps = g.constant(node.input[4]) if len(node.input) > 4 and node.input[4] else np.array([1])
        if data is None or starts is None or ends is None or axes is None or steps is None \
                or list(axes) not in ([0], [-1]) or list(steps) != [1]:
            return None
        start, end = int(starts[0]), int(ends[0])
        if isinstance(data, _LeadingDims) and not 0 <= start <= end < 2 ** 31:
            return None
        return data[start:end]
    if node.op_type == "Concat":
        parts = [_dims_of(g, i, source) for i in node.input]
        return None if any(p is None or isinstance(p, _LeadingDims) for p in parts) else [d for p in parts for d in p]
    return None


def constant_frames_shape(g: _Graph) -> int:
    """Reshape(x, [dim 0 of x, -1, C] computed at run time)  ->  Reshape(x, constant [0, -1, C])."""
    changed = 0
    for reshape in g.graph.node:
        if reshape.op_type != "Reshape" or g.constant(reshape.input[1]) is not None:
            continue
        shape_node = g.producer.get(reshape.input[1])
        while shape_node is not None and shape_node.op_type == "Cast":
            shape_node = g.producer.get(shape_node.input[0])
        if shape_node is None or shape_node.op_type != "Concat" or len(shape_node.input) != 3:
            continue
        first = g.producer.get(shape_node.input[0])
        rest = [g.constant(i) for i in shape_node.input[1:]]
        if first is None or first.op_type != "Slice" or any(r is None or r.size != 1 for r in rest):
            continue
        starts, ends = g.constant(first.input[1]), g.constant(first.input[2])
        axes = g.constant(first.input[3]) if len(first.input) > 3 and first.input[3] else np.array([0])
        if starts is None or ends is None or list(starts) != [0] or list(ends) != [1] or list(axes) != [0]:
            continue
        if not _shape_only_of(g, first.input[0], reshape.input[0]):
            continue
        if _dims_of(g, reshape.input[1], reshape.input[0]) != [("dim", 0), int(rest[0][0]), int(rest[1][0])]:
            raise GraphPatternError(f"the shape of {reshape.name} does not start with its input's dim 0")
        if g.attribute(reshape, "allowzero", 0):
            raise GraphPatternError(f"{reshape.name} has allowzero: a 0 in its shape would not copy dim 0")
        reshape.input[1] = g.add_initializer(f"{reshape.name}/shape",
                                             np.array([0, int(rest[0][0]), int(rest[1][0])], np.int64))
        changed += 1
    g.refresh()
    return changed


def unflattened_matmul(g: _Graph) -> int:
    """Reshape(x, [-1, K]) -> MatMul (float or dynamic int8) -> Reshape back to (batch, frames, N), the shapes
    constant or computed from x's at run time  ->  the product on the 3-D x itself (MatMul broadcasts over the
    leading axes: the same rows times the same matrix)."""
    changed = 0
    for flatten in list(g.graph.node):
        if flatten.op_type != "Reshape":
            continue
        source, shape = flatten.input[0], g.constant(flatten.input[1])
        if shape is not None and not (shape.shape == (2,) and shape[0] == -1):
            continue  # a constant flatten keeps the last axis whole: [-1, features]
        if shape is None and not _shape_only_of(g, flatten.input[1], source):
            continue
        # The region between the flatten and the unflatten: a matrix product, possibly dynamically quantised.
        frontier, region, unflatten = [flatten.output[0]], [], None
        while frontier:
            for node in g.consumers.get(frontier.pop(), []):
                if node.op_type == "Reshape" and node is not flatten:
                    if unflatten is not None and unflatten is not node:
                        region = None
                        break
                    unflatten = node
                    continue
                if node.op_type not in ("MatMul", "DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul"):
                    region = None
                    break
                region.append(node)
                frontier.extend(node.output)
            if region is None:
                break
        if region is None or unflatten is None or not any(n.op_type in ("MatMul", "MatMulInteger") for n in region):
            continue
        if not _shape_only_of(g, unflatten.input[1], source):
            continue
        if g.attribute(flatten, "allowzero", 0) or g.attribute(unflatten, "allowzero", 0):
            raise GraphPatternError(f"{flatten.name} or {unflatten.name} has allowzero")
        g.replace_uses(flatten.output[0], source)
        g.replace_uses(unflatten.output[0], unflatten.input[0])
        for out in g.graph.output:
            if out.name == unflatten.output[0]:
                raise GraphPatternError("the unflatten is the graph output")
        g.remove([flatten, unflatten])
        changed += 1
    return changed


def remove_dead_nodes(g: _Graph) -> int:
    live, stack = set(), [o.name for o in g.graph.output]
    while stack:
        node = g.producer.get(stack.pop())
        if node is None or id(node) in live:
            continue
        live.add(id(node))
        stack.extend(i for i in node.input if i)
    dead = [n for n in g.graph.node if id(n) not in live]
    g.remove(dead)
    used = {i for n in g.graph.node for i in n.input}
    kept = [t for t in g.graph.initializer if t.name in used]
    del g.graph.initializer[:]
    g.graph.initializer.extend(kept)
    g.refresh()
    return len(dead)


def simplify_graph(proto):
    """Rewrite ``proto`` (an exported line model) in place as described in the module docstring; returns a
    dict of what was rewritten. Raises ``GraphPatternError`` if a mask is not shaped as exported."""
    import onnx

    g = _Graph(proto.graph)
    report = {"column masks": share_column_masks(g)}
    report["masks after pools"] = pool_before_mask(g)
    report["zero initial states"] = drop_zero_initial_states(g)
    report["constant frame shapes"] = constant_frames_shape(g)
    report["unflattened products"] = unflattened_matmul(g)
    removed = remove_dead_nodes(g)  # the shape computations that kept the BiLSTM concats' outputs busy
    report["BiLSTM joins"] = join_lstm_directions(g)
    report["nodes removed"] = removed + remove_dead_nodes(g)
    del proto.graph.value_info[:]  # tf2onnx's intermediate shapes named tensors that may be gone
    onnx.checker.check_model(proto)
    return report


# -- checking and rewriting model files ---------------------------------------------------------------


def _session(model_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the Recognizer runs it
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def _feeds(lines: list[np.ndarray], stride: int, batch: int) -> list[dict]:
    """Lines alone, each padded to a whole stride, then in padded batches of ``batch`` in the given order."""
    def feed(chunk):
        width = max(stride, -(-max(line.shape[1] for line in chunk) // stride) * stride)
        image = np.zeros((len(chunk), chunk[0].shape[0], width, 1), np.float32)
        for row, line in enumerate(chunk):
            image[row, :, : line.shape[1], 0] = line
        return {"image": image, WIDTHS_INPUT: np.array([line.shape[1] for line in chunk], np.int32)}

    return [feed([line]) for line in lines] + [feed(lines[i: i + batch]) for i in range(0, len(lines), batch)]


def differing_outputs(before: bytes, after: bytes, lines: list[np.ndarray], stride: int, batch: int = 8) -> int:
    """How many runs (each line alone, then batches of ``batch``) give outputs that differ in any bit."""
    old, new = _session(before), _session(after)
    output = old.get_outputs()[0].name
    return sum(not np.array_equal(old.run([output], f)[0], new.run([output], f)[0])
               for f in _feeds(lines, stride, batch))


def _model_errors() -> tuple[type[BaseException], ...]:
    """What a model that cannot be simplified or run raises: a graph not shaped as exported, an invalid or
    unreadable ONNX file, metadata that describes no line model, or any onnxruntime error (they derive from
    Exception only)."""
    from google.protobuf.message import DecodeError
    from onnx.checker import ValidationError
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    from recognition.metadata import ModelMetadataError

    return (GraphPatternError, ValidationError, DecodeError, OSError, ModelMetadataError,
            *(v for v in vars(ort_errors).values() if isinstance(v, type) and issubclass(v, Exception)))


def _simplify_file(path: Path, samples: list) -> bool:
    """Rewrite ``path`` in place if the simplified graph's outputs are bit-identical on ``samples``."""
    import onnx

    from recognition.metadata import ModelInfo
    from recognition.recognizer import Recognizer

    original = path.read_bytes()
    proto = onnx.load_from_string(original)
    metadata = {p.key: p.value for p in proto.metadata_props}
    report = simplify_graph(proto)
    if not any(v for k, v in report.items()):
        print(f"{path}: already simplified")
        return True
    simplified = proto.SerializeToString()
    reader = Recognizer(path)
    lines = [reader.prepare(s.image_path) for s in samples]
    lines.sort(key=lambda line: line.shape[1])  # batches of similar widths, as the Recognizer makes them
    differing = differing_outputs(original, simplified, lines, reader.info.width_stride, CHECK_BATCH)
    if differing or {p.key: p.value for p in proto.metadata_props} != metadata:
        print(f"{path}: NOT rewritten: {differing} of the runs differ (or the metadata changed)")
        return False
    ModelInfo.from_props(metadata)  # still a readable model description
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(simplified)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f"{path}: {len(onnx.load_from_string(original).graph.node)} -> {len(proto.graph.node)} nodes "
          f"({', '.join(f'{k} {v}' for k, v in report.items())}); outputs bit-identical on {len(lines)} lines "
          f"alone and in batches of {CHECK_BATCH}")
    return True


def main(argv: list[str] | None = None) -> int:
    from recognition.line_data import SkipReport, iter_samples, matches_source

    parser = argparse.ArgumentParser(prog="python -m training.graph_simplification", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="exported .onnx line models, rewritten in place")
    parser.add_argument("--check", nargs="+", required=True, metavar="LINES",
                        help="line folders or manifests: every line is run alone and in batches through both graphs")
    parser.add_argument("--sources", nargs="*", help="only these sources of --check")
    parser.add_argument("--lines", type=int, default=0, help="at most this many lines (default: all)")
    args = parser.parse_args(argv)

    samples = [s for s in iter_samples(args.check, SkipReport())
               if not args.sources or matches_source(s.source, args.sources)]
    samples = samples[: args.lines] if args.lines else samples
    if len(samples) < CHECK_BATCH:
        # Fewer lines than one batch would not check batching at all (and none would "pass" vacuously).
        print(f"only {len(samples)} lines in --check {' '.join(args.check)}"
              f"{' --sources ' + ' '.join(args.sources) if args.sources else ''}; at least {CHECK_BATCH} are "
              f"needed to check the outputs: no model rewritten", file=sys.stderr)
        return 2
    errors, status = _model_errors(), 0
    for path in args.models:
        try:
            rewritten = _simplify_file(path, samples)
        except errors as error:  # one bad model does not stop the others; its file is left as it was
            print(f"{path}: NOT rewritten: {type(error).__name__}: {error}", file=sys.stderr)
            rewritten = False
        status = status or (0 if rewritten else 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
