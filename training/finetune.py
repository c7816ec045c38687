"""Continue training from a shipped model, growing its alphabet if needed.

The checkpoint (``models/NAME.keras``) carries its alphabet and architecture
(``training.checkpoint``). New characters are appended after the old ones, so
every old class keeps its index: the output layer grows by the new columns
and all other weights are kept as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from recognition.alphabet import Alphabet

from .checkpoint import load_model, read_info
from .model import ModelConfig, build_model, copy_weights

log = logging.getLogger("training.finetune")


def base_alphabet(keras_path: str | Path) -> Alphabet:
    return read_info(keras_path)[0]


def base_config(keras_path: str | Path) -> ModelConfig:
    return read_info(keras_path)[1]


def load_for_finetuning(keras_path: str | Path, alphabet: Alphabet):
    """The model at ``keras_path``, its softmax widened to ``alphabet`` if it grew."""
    old_alphabet, config = read_info(keras_path)
    if alphabet.characters[: len(old_alphabet)] != old_alphabet.characters:
        raise ValueError("the new alphabet must start with the model's alphabet (old indices are kept)")
    model = load_model(keras_path)
    if alphabet.num_classes == old_alphabet.num_classes:
        return model
    grown = build_model(config, alphabet.num_classes)
    kernel, bias = model.get_layer("logits").get_weights()
    copy_weights(model, grown, skip=("logits",))
    new_kernel, new_bias = grown.get_layer("logits").get_weights()
    new_kernel[:, : kernel.shape[1]] = kernel
    new_bias[: bias.shape[0]] = bias
    # New characters start unlikely, so the old behaviour is intact on step 0.
    new_bias[bias.shape[0]:] = float(np.min(bias)) - 1.0
    grown.get_layer("logits").set_weights([new_kernel, new_bias])
    log.info("output layer grown from %d to %d classes: %s", old_alphabet.num_classes, alphabet.num_classes,
             "".join(alphabet.characters[len(old_alphabet):]))
    return grown
