"""The CRNN: a lean convolutional front end, a BiLSTM, a softmax over the alphabet.

Speed comes from the layout (see shared notes): two strided convolutions cut
the line to a quarter of its width before any wide layer runs, the deeper
blocks are depthwise-separable, and height is pooled away so the recurrent
part sees one feature vector per 4 px column. The CTC frame rate is therefore
``width / 4`` (``WIDTH_STRIDE``).
"""

from __future__ import annotations

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


def build_model(config: ModelConfig, num_classes: int):
    """Keras model: ``image`` (batch, height, width, 1) -> ``probs`` (batch, width/4, classes).

    The layer before the softmax is named ``logits``; training computes CTC on it.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(config.height, None, 1), name="image")
    x = inputs
    for i, channels in enumerate(config.stem_channels):
        x = layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name=f"stem{i}_conv")(x)
        x = layers.BatchNormalization(name=f"stem{i}_bn")(x)
        x = layers.ReLU(name=f"stem{i}_relu")(x)
    for i, (channels, pool) in enumerate(zip(config.block_channels, config.block_pools)):
        x = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        if pool > 1:
            x = layers.MaxPooling2D(pool_size=(pool, 1), name=f"block{i}_pool")(x)
    height = final_height(config)
    x = layers.Permute((2, 1, 3), name="columns")(x)  # (batch, width, height, channels)
    x = layers.Reshape((-1, height * config.block_channels[-1]), name="frames")(x)
    if config.projection:
        x = layers.Dense(config.projection, activation="relu", name="projection")(x)
    for i, units in enumerate(config.lstm_units):
        x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name=f"bilstm{i}")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, name=f"dropout{i}")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    probs = layers.Softmax(name="probs")(logits)
    return keras.Model(inputs, probs, name="arabic_crnn")


def logits_model(model):
    """The same weights, stopping before the softmax (for the CTC loss)."""
    import keras

    return keras.Model(model.input, model.get_layer("logits").output)
