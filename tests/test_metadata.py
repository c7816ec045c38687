"""What a model file says about itself: round trip, required keys, incompatible preprocessing."""

import pytest

from recognition.alphabet import Alphabet
from recognition.image import NORMALISATION
from recognition.metadata import TEXT_NORMALISATION, ModelInfo, ModelMetadataError


def info(**overrides) -> ModelInfo:
    fields = dict(alphabet=Alphabet(["ا", "ب", " ", "1"]), input_height=48, width_stride=4, name="m", version="2",
                  training_data="books", validation_cer=0.0351234, extra={"architecture": "{}"})
    fields.update(overrides)
    return ModelInfo(**fields)


def test_props_round_trip():
    original = info()
    props = original.to_props()
    assert all(isinstance(v, str) for v in props.values())  # ONNX metadata_props are strings
    back = ModelInfo.from_props(props)
    assert back.alphabet == original.alphabet and back.input_height == 48 and back.width_stride == 4
    assert (back.name, back.version, back.training_data, back.mirror) == ("m", "2", "books", True)
    assert back.validation_cer == pytest.approx(0.035123, abs=1e-6)
    assert back.extra == {"architecture": "{}"}
    assert back.preprocess_config.height == 48 and back.preprocess_config.mirror


def test_missing_validation_cer_and_defaults():
    props = info(validation_cer=None).to_props()
    assert props["validation_cer"] == ""
    back = ModelInfo.from_props({k: props[k] for k in ("alphabet", "input_height", "width_stride")})
    assert back.validation_cer is None and back.name == "unnamed" and back.mirror is True
    assert back.normalisation == NORMALISATION and back.text_normalisation == TEXT_NORMALISATION


@pytest.mark.parametrize("key", ["alphabet", "input_height", "width_stride"])
def test_required_keys(key):
    props = info().to_props()
    del props[key]
    with pytest.raises(ModelMetadataError, match=key):
        ModelInfo.from_props(props)


def test_a_model_expecting_other_preprocessing_is_refused():
    props = info().to_props()
    props["normalisation"] = "something-else-v9"
    with pytest.raises(ModelMetadataError, match="something-else-v9"):
        ModelInfo.from_props(props)


def test_summary_lists_the_alphabet_as_text():
    summary = info().summary()
    assert summary["alphabet"] == "اب 1" and summary["alphabet_size"] == 4 and summary["input_height"] == 48


@pytest.mark.parametrize("cer", ["inf", "-inf", "nan", "1e999", "-0.5"])
def test_a_validation_cer_that_is_no_cer_is_refused(cer):
    props = info().to_props()
    props["validation_cer"] = cer
    with pytest.raises(ModelMetadataError, match="validation_cer"):
        ModelInfo.from_props(props)
