"""recognition.model_files: which Keras checkpoint a model file can be fine-tuned from."""

import pytest

from recognition.model_files import keras_twin


def test_a_model_is_fine_tuned_from_its_own_checkpoint_an_int8_one_from_its_float_models(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"k")
    assert keras_twin(tmp_path / "m.onnx") == tmp_path / "m.keras"
    assert keras_twin(tmp_path / "m-int8.onnx") == tmp_path / "m.keras"
    (tmp_path / "m-int8.keras").write_bytes(b"k")
    assert keras_twin(tmp_path / "m-int8.onnx") == tmp_path / "m-int8.keras"  # its own first


def test_a_model_alone_has_none_and_training_adapt_says_so(tmp_path):
    assert keras_twin(tmp_path / "ensemble.onnx") is None
    from training.adapt import keras_twin as checkpoint_for_training

    with pytest.raises(SystemExit, match="cannot be fine-tuned: no Keras checkpoint beside it"):
        checkpoint_for_training(tmp_path / "ensemble.onnx")
