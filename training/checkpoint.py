"""Keras checkpoints that describe themselves.

A ``.keras`` file is a zip archive; beside Keras' own entries we store
``arabic_ocr.json`` with the alphabet (the same JSON list as the ONNX
metadata's ``alphabet``) and the architecture, so fine-tuning needs nothing
but the checkpoint. Older checkpoints without it fall back to the metadata of
the ONNX model exported beside them (``NAME.onnx``), then to ``NAME.json``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from recognition.alphabet import Alphabet

from .model import ModelConfig, build_model, copy_weights, custom_layers

INFO_ENTRY = "arabic_ocr.json"


def save_model(model, path: str | Path, alphabet: Alphabet, config: ModelConfig) -> None:
    """``model.save`` plus the alphabet and architecture inside the archive (written to a temporary
    name first, so a reader never sees a checkpoint without them)."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as archive:
        archive.writestr(INFO_ENTRY, json.dumps({"alphabet": alphabet.to_json(), "model_config": config.to_dict()},
                                                ensure_ascii=False))
    tmp.replace(path)


def read_info(path: str | Path) -> tuple[Alphabet, ModelConfig]:
    """The alphabet and architecture a checkpoint was trained with."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        if INFO_ENTRY in archive.namelist():
            info = json.loads(archive.read(INFO_ENTRY).decode("utf-8"))
            return Alphabet.from_json(info["alphabet"]), ModelConfig.from_dict(info["model_config"])
    onnx_path = path.with_suffix(".onnx")
    if onnx_path.exists():
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        if "alphabet" in props and "architecture" in props:
            return Alphabet.from_json(props["alphabet"]), ModelConfig.from_dict(json.loads(props["architecture"]))
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        return Alphabet(info["alphabet"]), ModelConfig.from_dict(json.loads(info["extra"]["architecture"]))
    raise ValueError(f"{path} does not say which alphabet and architecture it has (no {INFO_ENTRY} inside, "
                     f"no {onnx_path.name} or {sidecar.name} beside it)")


def load_model(path: str | Path):
    """The Keras model of a checkpoint, in today's graph (image + widths) whatever graph it was saved with."""
    import keras

    custom_layers()  # registered before Keras meets them in the archive
    saved = keras.models.load_model(path, compile=False)
    if len(saved.inputs) == 2:
        return saved
    alphabet, config = read_info(path)
    current = build_model(config, alphabet.num_classes)
    copy_weights(saved, current)
    return current
