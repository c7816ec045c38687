"""Continue training from a shipped model, growing its alphabet if needed.

The checkpoint (``models/NAME.keras``) carries its alphabet and architecture
(``training.checkpoint``). New characters are appended after the old ones, so
every old class keeps its index: the output layer grows by the new columns
and all other weights are kept as they are.

A different (usually smaller) architecture can start from a trained one:
every layer whose name and weight shapes match is copied, the rest start
fresh. Dropping the second BiLSTM of the accurate layout keeps the whole
convolutional front end and the first BiLSTM, so the faster model starts
from features that already read Arabic print instead of from noise. The
output layer fits too (2 x 160 features either way) and is copied, though
it now reads the first BiLSTM's features instead of the second's: a start,
retrained with the rest. (Before this, ``--preset`` was ignored beside
``--init-from``; now it names the layout to train.)
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


def load_for_finetuning(keras_path: str | Path, alphabet: Alphabet, config: ModelConfig | None = None):
    """The model at ``keras_path``, its softmax widened to ``alphabet`` if it grew.

    With a ``config`` other than the checkpoint's, a model of that layout is
    built and given the checkpoint's weights layer by layer where they fit
    (``transfer_weights``).
    """
    old_alphabet, old_config = read_info(keras_path)
    if alphabet.characters[: len(old_alphabet)] != old_alphabet.characters:
        raise ValueError("the new alphabet must start with the model's alphabet (old indices are kept)")
    model = load_model(keras_path)
    if config is not None and config != old_config:
        if config.height != old_config.height:
            raise ValueError(f"cannot start a height-{config.height} model from a height-{old_config.height} one "
                             "(the convolutions learnt another scale)")
        reshaped = build_model(config, old_alphabet.num_classes)
        transfer_weights(model, reshaped)
        model = reshaped
    else:
        config = old_config
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


def transfer_weights(source, target) -> list[str]:
    """Copy each of ``source``'s layers into the ``target`` layer of the same name and weight shapes.

    Returns the names of the target's layers that start fresh (logged), so a
    run's log says how much of the old model it kept.
    """
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        old = source_layers.get(layer.name)
        if old is not None and [w.shape for w in old.get_weights()] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(old.get_weights())
        else:
            fresh.append(layer.name)
    log.info("started from %s: %d layers copied, fresh: %s", source.name,
             sum(1 for layer in target.layers if layer.weights) - len(fresh), ", ".join(fresh) or "none")
    return fresh
