"""The CRNN: a lean convolutional front end, a BiLSTM, a softmax over the alphabet.

Speed comes from the layout (see shared notes): two strided convolutions cut
the line to a quarter of its width before any wide layer runs, the deeper
blocks are depthwise-separable, and height is pooled away so the recurrent
part sees one feature vector per 4 px column. The CTC frame rate is therefore
``width / 4`` (``WIDTH_STRIDE``).

Padding is invisible: the model takes each line's true width (``widths``)
beside the padded batch, zeroes every column past it after each convolution
(so a 'same' convolution sees at the line's end exactly the zeros it would
see on the line alone) and masks the LSTMs (the backward pass starts at the
line's last frame, not in the padding). A line therefore reads the same alone
or in any batch, provided the padded width is a multiple of ``WIDTH_STRIDE``
(strided 'same' convolutions pad by the input's parity).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

WIDTH_STRIDE = 4


@dataclass(frozen=True)
class ModelConfig:
    height: int = 48
    stem_channels: tuple[int, int] = (32, 64)        # 3x3 convs, stride 2 each
    block_channels: tuple[int, ...] = (96, 128, 160)  # separable convs
    block_pools: tuple[int, ...] = (2, 2, 3)          # height pooling after each block
    projection: int = 0                               # dense size before the LSTMs (0 = none)
    lstm_units: tuple[int, ...] = (160, 160)
    dropout: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


PRESETS = {
    # The shipped default: accuracy first, still several times faster than Tesseract.
    "accurate": ModelConfig(),
    # The accurate layout with one BiLSTM instead of two: the LSTMs are most of the time, and it
    # starts from the accurate model's convolutions and first BiLSTM (``--init-from``).
    "swift": ModelConfig(lstm_units=(160,)),
    # Smaller and lower: for bulk jobs where a few CER points buy 2-3x speed.
    "fast": ModelConfig(height=32, stem_channels=(16, 32), block_channels=(48, 64, 96),
                        block_pools=(2, 2, 2), projection=96, lstm_units=(96,)),
    # For tests: trains in seconds.
    "tiny": ModelConfig(height=32, stem_channels=(8, 16), block_channels=(16,), block_pools=(8,),
                        lstm_units=(16,), dropout=0.0),
}


def final_height(config: ModelConfig) -> int:
    h = config.height
    for _ in config.stem_channels:
        h = -(-h // 2)
    for pool in config.block_pools:
        h = h // pool
    if h < 1:
        raise ValueError(f"{config} pools the height away entirely")
    return h


def frames_for(width: int) -> int:
    """CTC frames the model emits for a line ``width`` input pixels wide."""
    return -(-int(width) // WIDTH_STRIDE)


def padded_width(width: int) -> int:
    """The batch width a line of ``width`` pixels needs: whole frames, at least one."""
    return max(WIDTH_STRIDE, frames_for(width) * WIDTH_STRIDE)


@functools.cache
def custom_layers():
    """Keras layers of our own, defined (and registered for loading checkpoints) once Keras is imported."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="arabic_ocr")
    class ColumnMask(keras.layers.Layer):
        """Zero the feature columns past each line's true width at this layer's stride."""

        def __init__(self, stride: int, **kwargs):
            super().__init__(**kwargs)
            self.stride = stride

        def call(self, x, widths):
            valid = (ops.cast(widths, "int32") + (self.stride - 1)) // self.stride
            columns = ops.arange(ops.shape(x)[2], dtype="int32")
            keep = ops.cast(ops.expand_dims(columns, 0) < ops.expand_dims(valid, 1), x.dtype)
            return x * keep[:, None, :, None]

        def get_config(self):
            return {**super().get_config(), "stride": self.stride}

    @keras.saving.register_keras_serializable(package="arabic_ocr")
    class FrameMask(keras.layers.Layer):
        """Boolean (batch, frames) mask of the frames inside each line, for the LSTMs."""

        def __init__(self, stride: int, **kwargs):
            super().__init__(**kwargs)
            self.stride = stride

        def call(self, frames, widths):
            valid = (ops.cast(widths, "int32") + (self.stride - 1)) // self.stride
            steps = ops.arange(ops.shape(frames)[1], dtype="int32")
            return ops.expand_dims(steps, 0) < ops.expand_dims(valid, 1)

        def get_config(self):
            return {**super().get_config(), "stride": self.stride}

    @keras.saving.register_keras_serializable(package="arabic_ocr")
    class EndMask(keras.layers.Layer):
        """Identity that ends Keras' mask propagation: frames past a line are decoded by nobody,
        and a mask reaching the softmax would change its output there."""

        def call(self, x):
            return x + 0.0  # a new tensor: the input tensor still carries its mask

        def compute_mask(self, inputs, mask=None):
            return None

    return ColumnMask, FrameMask, EndMask


def build_model(config: ModelConfig, num_classes: int, mask_lstm: bool = True):
    """Keras model: (``image`` (batch, height, width, 1), ``widths`` (batch,)) -> ``probs`` (batch, width/4, classes).

    ``widths`` are the lines' true widths in input pixels; the batch is padded
    with zeros (paper) to a multiple of ``WIDTH_STRIDE``. The layer before the
    softmax is named ``logits``; training computes CTC on it. ``mask_lstm=False``
    builds the same graph without the LSTM mask, for the ONNX converter (which
    only recognises unmasked LSTMs; ``training.export`` gives the ONNX LSTMs
    their ``sequence_lens`` instead).
    """
    import keras
    from keras import layers

    ColumnMask, FrameMask, EndMask = custom_layers()
    image = keras.Input(shape=(config.height, None, 1), name="image")
    widths = keras.Input(shape=(), dtype="int32", name="widths")
    x = image
    stride = 1
    for i, channels in enumerate(config.stem_channels):
        x = layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name=f"stem{i}_conv")(x)
        x = layers.BatchNormalization(name=f"stem{i}_bn")(x)
        x = layers.ReLU(name=f"stem{i}_relu")(x)
        stride *= 2
        x = ColumnMask(stride, name=f"stem{i}_mask")(x, widths)
    if stride != WIDTH_STRIDE:
        raise ValueError(f"{len(config.stem_channels)} stride-2 stems give stride {stride}, not {WIDTH_STRIDE}")
    for i, (channels, pool) in enumerate(zip(config.block_channels, config.block_pools)):
        x = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        x = ColumnMask(stride, name=f"block{i}_mask")(x, widths)
        if pool > 1:
            x = layers.MaxPooling2D(pool_size=(pool, 1), name=f"block{i}_pool")(x)
    height = final_height(config)
    x = layers.Permute((2, 1, 3), name="columns")(x)  # (batch, width, height, channels)
    x = layers.Reshape((-1, height * config.block_channels[-1]), name="frames")(x)
    frame_mask = FrameMask(WIDTH_STRIDE, name="frame_mask")(x, widths) if mask_lstm else None
    if config.projection:
        x = layers.Dense(config.projection, activation="relu", name="projection")(x)
    for i, units in enumerate(config.lstm_units):
        x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name=f"bilstm{i}")(x, mask=frame_mask)
        if config.dropout:
            x = layers.Dropout(config.dropout, name=f"dropout{i}")(x)
    if frame_mask is not None:
        x = EndMask(name="end_mask")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    probs = layers.Softmax(name="probs")(logits)
    return keras.Model([image, widths], probs, name="arabic_crnn")


def copy_weights(source, target, skip: tuple[str, ...] = ()) -> None:
    """Layer-by-layer weights by name (e.g. a one-input v1 checkpoint into today's graph)."""
    for layer in source.layers:
        if layer.weights and layer.name not in skip:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def logits_model(model):
    """The same weights, stopping before the softmax (for the CTC loss)."""
    import keras

    return keras.Model(model.input, model.get_layer("logits").output)
