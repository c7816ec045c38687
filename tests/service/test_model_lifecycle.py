"""Item 6 of issue 10: the model lifecycle lives in ocr_app.registry; loaded sessions in ocr_app.engine."""

import ast
from pathlib import Path

import pytest

from ocr_app import engine, registry
from ocr_app.errors import ApiError
from ocr_app.models import ModelVersion

ROOT = Path(__file__).resolve().parents[2]


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / "ocr_app" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(f"{'.' * node.level}{node.module or ''}.{a.name}".replace("..", ".") for a in node.names)
            names.add(f"{'.' * node.level}{node.module or ''}")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_registry_and_engine_do_not_import_each_other():
    assert not any("engine" in name for name in _imports("registry"))
    assert not any("registry" in name for name in _imports("engine"))


@pytest.mark.django_db
def test_requests_do_not_register_the_default_model(api, client):
    ModelVersion.objects.all().delete()
    registry.forget_active_version()
    assert api.get("/api/v1/models/").json() == []
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "no model is active" in ready.json()["checks"]["model"]
    response = api.post("/api/v1/recognitions/", {"image": "aGVsbG8="}, format="json")
    assert response.status_code in (400, 503)  # not an image, or no model: never a registration
    assert ModelVersion.objects.count() == 0


@pytest.mark.django_db
def test_start_up_registers_the_default_model_once(settings, line_png, api):
    from ocr_app.startup import start_serving_process

    ModelVersion.objects.all().delete()
    registry.forget_active_version()
    start_serving_process(warm_up=False)
    start_serving_process(warm_up=False)
    active = ModelVersion.objects.get()
    assert active.is_active and active.file_path.resolve() == Path(settings.OCR_DEFAULT_MODEL).resolve()
    assert registry.active_version(refresh=True) == active


@pytest.mark.django_db
def test_no_active_model_is_a_json_503(api, line_png):
    from django.core.files.uploadedfile import SimpleUploadedFile

    ModelVersion.objects.all().delete()
    registry.forget_active_version()
    response = api.post("/api/v1/recognitions/", {"image": SimpleUploadedFile("l.png", line_png)},
                        format="multipart")
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_active_model"


@pytest.mark.django_db
def test_loaded_sessions_are_keyed_by_the_file_hash(model_file, tmp_path):
    """A second registration of the same file (another name/version) shares the loaded session."""
    active = registry.active_version(refresh=True)
    twin = ModelVersion.objects.create(name="twin", version="9", path=str(model_file), sha256=active.sha256,
                                       metadata=active.metadata)
    assert engine.recognizer_for(twin) is engine.recognizer_for(active)
    assert engine.is_loaded(active)


@pytest.mark.django_db
def test_the_language_model_is_off_unless_a_setting_names_one(settings, tmp_path, line_png):
    from recognition.beam_search import CTCBeamSearch
    from training import char_lm

    assert settings.OCR_LANGUAGE_MODEL == ""  # greedy decoding is the default
    active = registry.active_version(refresh=True)
    engine.forget_loaded_models()
    try:
        greedy = engine.recognizer_for(active)
        assert greedy.decoder is None
        lm_file = tmp_path / "lm.npz"
        assert char_lm.main(["build", "--corpus", str(ROOT / "datasets" / "corpus"), "--order", "4",
                             "--out", str(lm_file)]) == 0
        settings.OCR_LANGUAGE_MODEL = str(lm_file)
        engine.forget_loaded_models()
        with_lm = engine.recognizer_for(active)
        assert isinstance(with_lm.decoder, CTCBeamSearch) and with_lm.decoder.lm.source == str(lm_file)
        assert with_lm.recognize([line_png])[0].text  # reads
        settings.OCR_LANGUAGE_MODEL = str(tmp_path / "missing.npz")
        engine.forget_loaded_models()
        with pytest.raises(ApiError, match="missing.npz") as caught:  # the model does not load: /readyz says so
            engine.recognizer_for(active)
        assert caught.value.status_code == 503 and caught.value.error_code == "language_model_unavailable"
    finally:
        engine.forget_loaded_models()


def _recognize(api, line_png):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return api.post("/api/v1/recognitions/", {"image": SimpleUploadedFile("l.png", line_png)}, format="multipart")


@pytest.mark.django_db
def test_a_bad_language_model_setting_is_a_503_said_by_readyz_and_not_retried(settings, tmp_path, api, client,
                                                                              line_png):
    from ocr_app.checks import language_model_setting

    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    settings.OCR_LANGUAGE_MODEL = str(broken)
    engine.forget_loaded_models()
    try:
        response = _recognize(api, line_png)
        assert response.status_code == 503, response.content
        error = response.json()["error"]
        assert error["code"] == "language_model_unavailable"
        assert "OCR_LANGUAGE_MODEL" in error["message"] and str(broken) in error["message"]
        assert "not a language model file" in error["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "not a language model file" in ready.json()["checks"]["language_model"]
        # Found once and remembered: a good file put there now is not read until the process restarts.
        broken.write_bytes((ROOT / "models" / "arabic-char-lm.npz").read_bytes())
        assert _recognize(api, line_png).json()["error"]["code"] == "language_model_unavailable"
        [problem] = language_model_setting()  # the start-up system check says the same, naming the setting
        assert problem.id == "ocr_app.E001" and "OCR_LANGUAGE_MODEL" in problem.msg and str(broken) in problem.msg
        engine.forget_loaded_models()  # a restart: now it loads
        assert language_model_setting() == []
        assert _recognize(api, line_png).status_code in (200, 201)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["language_model"] == "ok"
    finally:
        engine.forget_loaded_models()


@pytest.mark.django_db
def test_a_language_model_for_another_text_convention_is_a_503_said_by_readyz(settings, tmp_path, api, client,
                                                                             line_png):
    from recognition.char_lm import save
    from training import char_lm

    header, tables = char_lm.build(["قال أبو محمد", "ثم دخلت سنة"], order=3)
    other = tmp_path / "other.npz"
    save(other, {**header, "text_normalisation": "keep-harakat-v9"}, tables)
    settings.OCR_LANGUAGE_MODEL = str(other)
    engine.forget_loaded_models()
    try:
        response = _recognize(api, line_png)
        assert response.status_code == 503 and response.json()["error"]["code"] == "language_model_unavailable"
        assert "keep-harakat-v9" in response.json()["error"]["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "keep-harakat-v9" in ready.json()["checks"]["language_model"]
    finally:
        engine.forget_loaded_models()


def test_a_relative_language_model_path_is_taken_from_the_project_folder(settings):
    settings.OCR_LANGUAGE_MODEL = "models/arabic-char-lm.npz"
    assert engine.language_model_path() == Path(settings.BASE_DIR) / "models" / "arabic-char-lm.npz"
    settings.OCR_LANGUAGE_MODEL = ""
    assert engine.language_model_path() is None
