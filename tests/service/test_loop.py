"""Closing the loop: reviewed lines out, a new model in, without downtime."""

import json
import threading
import time
from io import StringIO

import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from onnx import numpy_helper

from ocr_app import services
from ocr_app.models import ModelVersion, Recognition
from tests.conftest import write_line_folder
from tests.rendering import png_bytes, render_line

URL = "/api/v1/recognitions/"


def post(api, text):
    data = png_bytes(render_line(text))
    return api.post(URL, {"image": SimpleUploadedFile("l.png", data)}, format="multipart").json()


def model_variant(model_file, tmp_path, version, blank_bias=None):
    """The same model under a new version; ``blank_bias`` makes it (much) worse on purpose."""
    proto = onnx.load(str(model_file))
    for prop in proto.metadata_props:
        if prop.key == "version":
            prop.value = version
    if blank_bias is not None:
        classes = len(json.loads(next(p.value for p in proto.metadata_props if p.key == "alphabet"))) + 1
        biases = [t for t in proto.graph.initializer if list(t.dims) == [classes]]
        assert biases, "no output bias found"
        for tensor in biases:
            values = numpy_helper.to_array(tensor).copy()
            values[0] += blank_bias  # the blank wins every frame: the model reads nothing
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    path = tmp_path / f"{version}.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.django_db
def test_export_reviewed_writes_a_line_dataset_with_provenance(api, staff, tmp_path):
    verified, corrected = post(api, "قال أبو محمد"), post(api, "سنة 45")
    post(api, "ثم دخلت سنة")  # left unreviewed: not exported
    services.review(Recognition.objects.get(pk=verified["id"]), staff)
    services.review(Recognition.objects.get(pk=corrected["id"]), staff, "سنة 45 هـ")
    out = tmp_path / "reviewed"
    stdout = StringIO()
    call_command("export_reviewed", str(out), stdout=stdout)
    assert "exported 2 lines" in stdout.getvalue()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    items = {i["recognition_id"]: i for i in manifest["items"]}
    assert set(items) == {verified["id"], corrected["id"]}
    assert items[corrected["id"]]["text"] == "سنة 45 هـ" and items[corrected["id"]]["status"] == "corrected"
    assert items[verified["id"]]["text"] == verified["text"]
    assert items[verified["id"]]["reviewer"] == "reviewer" and items[verified["id"]]["model"]["version"]
    name = items[corrected["id"]]["name"]
    assert (out / f"{name}.gt.txt").read_text(encoding="utf-8") == "سنة 45 هـ\n"
    assert (out / f"{name}.png").exists()

    # the export is an ordinary line dataset for training.preprocess
    from training import preprocess
    from training.shards import read_manifest

    preprocess.main([str(out), "--out", str(tmp_path / "arrays"), "--workers", "1"])
    arrays = read_manifest(tmp_path / "arrays")
    non_empty = sum(1 for i in manifest["items"] if i["text"].strip())  # a verified empty reading is skipped
    assert arrays["splits"]["train"]["lines"] == non_empty >= 1

    stdout = StringIO()
    call_command("export_reviewed", str(tmp_path / "later"), "--since", "2999-01-01", "--status", "corrected",
                 stdout=stdout)
    assert "exported 0 lines" in stdout.getvalue()
    with pytest.raises(CommandError):
        call_command("export_reviewed", str(tmp_path / "x"), "--status", "unreviewed", stdout=StringIO())


@pytest.mark.django_db
@pytest.mark.parametrize("since", ["2026-02-30", "yesterday", "9999-12-31T23:59:59-23:59"])
def test_export_reviewed_bad_since_is_a_command_error(tmp_path, since):
    with pytest.raises(CommandError, match="--since"):
        call_command("export_reviewed", str(tmp_path / "out"), "--since", since, stdout=StringIO())
    assert not (tmp_path / "out").exists()


@pytest.mark.django_db
def test_export_reviewed_refuses_a_non_empty_folder_or_replaces_it_whole(api, staff, tmp_path):
    first = post(api, "قال أبو محمد")
    services.review(Recognition.objects.get(pk=first["id"]), staff, "قال أبو محمد بن علي")
    out = tmp_path / "reviewed"
    out.mkdir()
    (out / "stale.png").write_bytes(b"an old export's image")
    (out / "stale.gt.txt").write_text("an old export's text\n", encoding="utf-8")
    with pytest.raises(CommandError, match="not empty"):
        call_command("export_reviewed", str(out), stdout=StringIO())
    assert sorted(p.name for p in out.iterdir()) == ["stale.gt.txt", "stale.png"]  # untouched
    call_command("export_reviewed", str(out), "--replace", stdout=StringIO())
    names = sorted(p.name for p in out.iterdir())
    assert "stale.png" not in names and "stale.gt.txt" not in names
    assert names == sorted([f"r{first['id']:08d}.png", f"r{first['id']:08d}.gt.txt", "manifest.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left beside it


@pytest.mark.django_db
def test_quality_gate_refuses_a_worse_model_unless_forced(api, model_file, tmp_path):
    post(api, "قال أبو محمد")  # registers and activates the shipped model
    reference = tmp_path / "reference"
    write_line_folder(reference, ["قال أبو محمد", "وكان عالما فاضلا", "ثم دخلت سنة"], "Amiri-Regular")
    worse = model_variant(model_file, tmp_path, "worse", blank_bias=50.0)
    out = StringIO()
    with pytest.raises(CommandError, match="worse than the active model"):
        call_command("register_model", str(worse), "--activate", "--reference", str(reference), stdout=out)
    assert "candidate CER 100.00%" in out.getvalue()
    assert not ModelVersion.objects.get(version="worse").is_active
    call_command("register_model", str(worse), "--activate", "--force", "--reference", str(reference), stdout=out)
    assert ModelVersion.objects.get(version="worse").is_active


@pytest.mark.django_db
def test_quality_gate_lets_an_equal_or_better_model_through(api, model_file, tmp_path):
    post(api, "قال أبو محمد")
    reference = tmp_path / "reference"
    write_line_folder(reference, ["قال أبو محمد", "سنة 45"], "Amiri-Regular")
    same = model_variant(model_file, tmp_path, "same-weights")
    out = StringIO()
    call_command("register_model", str(same), "--activate", "--reference", str(reference), stdout=out)
    assert "activated" in out.getvalue() and ModelVersion.objects.get(version="same-weights").is_active


@pytest.mark.django_db
def test_admin_reruns_an_image_on_the_active_model(api, client, staff, model_file, tmp_path):
    first = post(api, "قال أبو محمد")
    call_command("register_model", str(model_variant(model_file, tmp_path, "v-next")), "--activate",
                 stdout=StringIO())
    from ocr_app import registry

    registry.active_version(refresh=True)
    client.force_login(staff)
    response = client.post("/admin/ocr_app/recognition/", {"action": "rerun_on_active_model",
                                                            "_selected_action": [first["id"]]})
    assert response.status_code == 302
    rerun = Recognition.objects.exclude(pk=first["id"]).get()
    assert rerun.model_version.version == "v-next" and rerun.image_id == Recognition.objects.get(pk=first["id"]).image_id
    page = client.get(f"/admin/ocr_app/recognition/{first['id']}/change/").content.decode()
    assert "v-next" in page  # the reviewer sees the other model's reading beside this one


@pytest.mark.django_db(transaction=True)
def test_hot_switch_under_concurrent_requests_loses_nothing(live_server, user, model_file, tmp_path, settings):
    from rest_framework.authtoken.models import Token

    from client.ocr_client import OcrClient

    settings.OCR_ACTIVE_MODEL_CHECK_SECONDS = 0.2
    token = Token.objects.get_or_create(user=user)[0].key
    folder = tmp_path / "lines"
    texts = [f"قال أبو محمد {i}" for i in range(30)]
    files = write_line_folder(folder, texts, "Amiri-Regular")
    client = OcrClient(live_server.url, token, retries=0)
    client.recognize(files[0])  # the shipped model is active
    new_model = model_variant(model_file, tmp_path, "hot")
    results, errors = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(offset):
        i = offset
        while not stop.is_set() and i < 3000:  # bounded, and it keeps going until the switch is seen
            try:
                r = client.recognize(files[i % len(files)])
                with lock:
                    results.append((time.monotonic(), r["model"]["version"]))
            except Exception as exc:  # any failure fails the test below
                with lock:
                    errors.append(repr(exc))
            i += 3

    threads = [threading.Thread(target=worker, args=(k + 1,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    switched_at = time.monotonic()
    call_command("register_model", str(new_model), "--activate", stdout=StringIO())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(v == "hot" for _, v in results):
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    versions = [v for _, v in results]
    assert "hot" in versions, versions
    first_new = min(t for t, v in results if v == "hot")
    assert first_new - switched_at < 5.0
    assert all(v == "hot" for t, v in results if t > first_new + 1.0)
