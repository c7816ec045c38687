"""Continue training from a shipped model, growing its alphabet if needed.

``models/NAME.keras`` travels with ``models/NAME.json`` (written by
``training.export``: alphabet, input height, architecture). New characters
are appended after the old ones, so every old class keeps its index: the
output layer grows by the new columns and all other weights are kept as they
are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from recognition.alphabet import Alphabet

from .model import ModelConfig, build_model

log = logging.getLogger("training.finetune")


def _info_path(keras_path: str | Path) -> Path:
    path = Path(keras_path).with_suffix(".json")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: fine-tuning needs the model's alphabet and architecture "
                                "(training.export writes it beside the .keras file)")
    return path


def model_info(keras_path: str | Path) -> dict:
    return json.loads(_info_path(keras_path).read_text(encoding="utf-8"))


def base_alphabet(keras_path: str | Path) -> Alphabet:
    return Alphabet(model_info(keras_path)["alphabet"])


def base_config(keras_path: str | Path) -> ModelConfig:
    info = model_info(keras_path)
    return ModelConfig.from_dict(json.loads(info["extra"]["architecture"]))


def load_for_finetuning(keras_path: str | Path, alphabet: Alphabet):
    """The model at ``keras_path``, its softmax widened to ``alphabet`` if it grew."""
    import keras

    old_alphabet = base_alphabet(keras_path)
    if alphabet.characters[: len(old_alphabet)] != old_alphabet.characters:
        raise ValueError("the new alphabet must start with the model's alphabet (old indices are kept)")
    model = keras.models.load_model(keras_path, compile=False)
    if alphabet.num_classes == old_alphabet.num_classes:
        return model
    grown = build_model(base_config(keras_path), alphabet.num_classes)
    for layer in model.layers:
        if layer.name == "logits" or not layer.weights:
            continue
        grown.get_layer(layer.name).set_weights(layer.get_weights())
    kernel, bias = model.get_layer("logits").get_weights()
    new_kernel, new_bias = grown.get_layer("logits").get_weights()
    new_kernel[:, : kernel.shape[1]] = kernel
    new_bias[: bias.shape[0]] = bias
    # New characters start unlikely, so the old behaviour is intact on step 0.
    new_bias[bias.shape[0]:] = float(np.min(bias)) - 1.0
    grown.get_layer("logits").set_weights([new_kernel, new_bias])
    log.info("output layer grown from %d to %d classes: %s", old_alphabet.num_classes, alphabet.num_classes,
             "".join(alphabet.characters[len(old_alphabet):]))
    return grown
