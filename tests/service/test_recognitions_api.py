import base64
import io
import re

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ocr_app.models import Recognition, StoredImage
from tests.rendering import png_bytes, render_line
from tests.service.conftest import media_files

pytestmark = pytest.mark.django_db
URL = "/api/v1/recognitions/"


def upload(data: bytes, name="line.png", field="image"):
    return {field: SimpleUploadedFile(name, data, content_type="application/octet-stream")}


def test_multipart_upload_is_recognised_and_stored(api, user, line_png, settings):
    response = api.post(URL, upload(line_png), format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"id", "text", "confidence", "characters", "model", "duration_ms", "image_sha256",
                         "created_at", "cached"}
    assert body["text"].startswith("قال")  # the shipped model reads it
    assert 0.0 < body["confidence"] < 1.0  # calibrated: the probability that the whole line is right
    assert "".join(c["char"] for c in body["characters"]) == body["text"]
    assert all(0.0 <= c["confidence"] <= 1.0 for c in body["characters"])
    assert body["model"]["name"] and body["model"]["version"]
    assert body["cached"] is False
    recognition = Recognition.objects.get(pk=body["id"])
    assert recognition.user == user and recognition.text == body["text"]
    assert len(media_files(settings)) == 1
    assert media_files(settings)[0].read_bytes() == line_png


def test_json_base64_and_data_url(api, line_png):
    encoded = base64.b64encode(line_png).decode()
    first = api.post(URL, {"image": encoded}, format="json")
    assert first.status_code == 201, first.content
    second = api.post(URL, {"image": f"data:image/png;base64,{encoded}"}, format="json")
    assert second.status_code == 200  # same image, same user: the stored result
    assert second.json()["id"] == first.json()["id"] and second.json()["cached"] is True


def test_same_image_is_not_recognised_twice(api, other_api, line_png, monkeypatch):
    first = api.post(URL, upload(line_png), format="multipart").json()
    from recognition.recognizer import Recognizer

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran for a cached image")

    monkeypatch.setattr(Recognizer, "recognize_lines", must_not_run)
    again = api.post(URL, upload(line_png), format="multipart")
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["id"] == first["id"]
    other = other_api.post(URL, upload(line_png), format="multipart")
    # reused internally, but the other user cannot tell that someone sent this image first
    assert other.status_code == 201
    assert other.json()["cached"] is False and other.json()["text"] == first["text"]
    assert other.json()["duration_ms"] == first["duration_ms"] > 0
    assert other.json()["id"] != first["id"]
    assert Recognition.objects.get(pk=other.json()["id"]).cached is True
    assert StoredImage.objects.count() == 1  # content-addressed, stored once
    assert Recognition.objects.count() == 2
    # the first user still gets their own record back, not the other user's newer copy
    assert api.post(URL, upload(line_png), format="multipart").json()["id"] == first["id"]
    assert Recognition.objects.count() == 2


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def _truncated_png():
    return png_bytes(render_line("قال أبو محمد"))[:300]


def _multi_frame_tiff():
    frames = [Image.fromarray(render_line("قال")), Image.fromarray(render_line("محمد"))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def ultra_hdr_jpeg(picture: Image.Image) -> bytes:
    """A JPEG as an Android phone writes a photo by default: the picture, and its HDR gain map (a second, smaller
    image) in a Multi-Picture segment, which Pillow opens as format MPO with two frames."""
    gain_map = picture.convert("L").resize((max(1, picture.width // 4), max(1, picture.height // 4)))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="MPO", save_all=True, append_images=[gain_map], quality=95)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    return buffer.getvalue()


def test_a_phone_jpeg_with_a_gain_map_is_one_line_image(api, line_png):
    """It was refused as multi_frame_image: the gain map is no second line."""
    answer = api.post(URL, upload(ultra_hdr_jpeg(Image.open(io.BytesIO(line_png))), name="photo.jpg"),
                      format="multipart")
    assert answer.status_code == 201, answer.content
    assert answer.json()["text"].startswith("قال")


@pytest.mark.parametrize("data, status, code", [
    (b"GIF89a but not really an image", 400, "corrupt_image"),   # a GIF's start: a damaged image, not another kind
    (b"GIF, but not really an image", 400, "not_an_image"),
    (b"%PDF-1.4 a document", 400, "not_an_image"),
    (b"", 400, "empty_file"),
    (None, 400, "corrupt_image"),
    ("multi", 400, "multi_frame_image"),
])
def test_bad_images_get_a_clear_error_and_leave_nothing(api, settings, data, status, code):
    data = _truncated_png() if data is None else _multi_frame_tiff() if data == "multi" else data
    response = api.post(URL, upload(data), format="multipart")
    _assert_error(response, status, code)
    assert Recognition.objects.count() == 0 and StoredImage.objects.count() == 0
    assert media_files(settings) == []


def test_huge_dimensions_are_refused(api, settings):
    settings.OCR_MAX_PIXELS = 1_000_000
    data = png_bytes(Image.new("L", (4000, 400), 255))
    error = _assert_error(api.post(URL, upload(data), format="multipart"), 413, "image_too_large")
    assert "1000000" in error["message"]
    assert StoredImage.objects.count() == 0 and media_files(settings) == []


def test_oversized_upload_is_refused(api, settings, line_png):
    settings.OCR_MAX_UPLOAD_BYTES = 1000
    _assert_error(api.post(URL, upload(line_png), format="multipart"), 413, "file_too_large")
    assert Recognition.objects.count() == 0


def test_wrong_field_name_says_which_field_to_use(api, line_png):
    error = _assert_error(api.post(URL, upload(line_png, field="file"), format="multipart"), 400, "missing_image")
    assert "'image'" in error["message"] and "file" in error["message"]


@pytest.mark.parametrize("value", ["not base64 at all!!", "data:image/png,rawdata", "", 42])
def test_bad_base64(api, value):
    response = api.post(URL, {"image": value}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_base64", "missing_image")
    assert Recognition.objects.count() == 0


def test_unknown_model_is_a_client_error(api, line_png):
    _assert_error(api.post(URL, {**upload(line_png), "model": "no-such-model"}, format="multipart"),
                  400, "unknown_model")


@pytest.mark.parametrize("convert", ["I;16", "CMYK", "P", "RGBA", "LA", "1"])
def test_unusual_image_modes_are_recognised(api, convert):
    grey = render_line("وكان عالما فاضلا")
    if convert == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)
    elif convert == "RGBA":
        rgba = np.zeros(grey.shape + (4,), np.uint8)
        rgba[..., 3] = 255 - grey
        image = Image.fromarray(rgba, "RGBA")
    else:
        image = Image.fromarray(grey).convert(convert)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if convert == "CMYK" else "PNG")
    response = api.post(URL, upload(buffer.getvalue()), format="multipart")
    assert response.status_code == 201, response.content


def test_unauthenticated_requests_get_a_json_401(client, line_png):
    response = client.post(URL, upload(line_png))
    _assert_error(response, 401, "not_authenticated")


def test_throttling_per_user(api, other_api, line_png, monkeypatch):
    from rest_framework.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min"})
    for _ in range(3):
        assert api.get(URL).status_code == 200
    _assert_error(api.get(URL), 429, "throttled")
    assert other_api.get(URL).status_code == 200  # another user has their own budget


def test_batch_keeps_order_and_isolates_bad_images(api):
    good = [png_bytes(render_line(t)) for t in ("قال أبو محمد", "سنة 45", "ثم دخلت سنة")]
    files = [SimpleUploadedFile("a.png", good[0]), SimpleUploadedFile("bad.png", b"nope"),
             SimpleUploadedFile("b.png", good[1]), SimpleUploadedFile("c.png", good[2])]
    response = api.post(URL + "batch/", {"images": files}, format="multipart")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["file"] for r in results] == ["a.png", "bad.png", "b.png", "c.png"]
    assert results[1]["error"]["code"] == "not_an_image" and "result" not in results[1]
    assert all("result" in results[i] for i in (0, 2, 3))
    assert Recognition.objects.count() == 3


def test_batch_limit(api, settings, line_png):
    settings.OCR_MAX_BATCH = 2
    files = [SimpleUploadedFile(f"{i}.png", line_png) for i in range(3)]
    _assert_error(api.post(URL + "batch/", {"images": files}, format="multipart"), 400, "batch_too_large")
    assert Recognition.objects.count() == 0


def test_batch_json(api, line_png):
    encoded = base64.b64encode(line_png).decode()
    response = api.post(URL + "batch/", {"images": [encoded, "%%%"]}, format="json")
    results = response.json()["results"]
    assert "result" in results[0] and results[1]["error"]["code"] == "invalid_base64"


def test_users_see_their_own_staff_see_all(api, other_api, staff_api, line_png):
    mine = api.post(URL, upload(line_png), format="multipart").json()
    theirs = other_api.post(URL, upload(png_bytes(render_line("سنة 12"))), format="multipart").json()
    assert [r["id"] for r in api.get(URL).json()["results"]] == [mine["id"]]
    assert api.get(f"{URL}{theirs['id']}/").status_code == 404
    assert api.get(f"{URL}{mine['id']}/").json()["text"] == mine["text"]
    assert {r["id"] for r in staff_api.get(URL).json()["results"]} == {mine["id"], theirs["id"]}


def test_list_filters_and_pagination(api, settings, user):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 2}
    ids = [api.post(URL, upload(png_bytes(render_line(t))), format="multipart").json()["id"]
           for t in ("قال", "سنة 12", "محمد بن علي")]
    Recognition.objects.filter(pk=ids[0]).update(status="verified", confidence=0.99)
    Recognition.objects.filter(pk__in=ids[1:]).update(confidence=0.2)
    page = api.get(URL).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert [r["id"] for r in api.get(URL, {"status": "verified"}).json()["results"]] == [ids[0]]
    assert api.get(URL, {"min_confidence": "0.9"}).json()["count"] == 1
    assert api.get(URL, {"max_confidence": "0.5"}).json()["count"] == 2
    assert api.get(URL, {"created_after": "2000-01-01"}).json()["count"] == 3
    assert api.get(URL, {"created_before": "2000-01-01"}).json()["count"] == 0
    _assert_error(api.get(URL, {"status": "maybe"}), 400, "invalid_filter")
    _assert_error(api.get(URL, {"min_confidence": "high"}), 400, "invalid_filter")
    # `model` filters by the forms an upload's `model` takes: name, version, or name:version
    model = Recognition.objects.get(pk=ids[0]).model_version
    for form in (model.name, model.version, f"{model.name}:{model.version}"):
        assert api.get(URL, {"model": form}).json()["count"] == 3, form
    assert api.get(URL, {"model": f"{model.name}:no-such-version"}).json()["count"] == 0
    assert api.get(URL, {"model": "no-such-model"}).json()["count"] == 0


def test_models_endpoint_lists_the_active_model(api):
    models = api.get("/api/v1/models/").json()
    assert len(models) == 1 and models[0]["is_active"] is True
    assert models[0]["alphabet_size"] > 30 and models[0]["input_height"] in (32, 48)


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"]["model"] == "ok" and ready.json()["checks"]["database"] == "ok"


def test_openapi_schema_and_docs(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    doc = schema.json()
    assert {"/api/v1/recognitions/", "/api/v1/recognitions/batch/", "/api/v1/models/"} <= set(doc["paths"])
    post = doc["paths"]["/api/v1/recognitions/"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "201" in post["responses"]
    schemas = doc["components"]["schemas"]

    def resolve(ref_or_schema):
        return schemas[ref_or_schema["$ref"].rsplit("/", 1)[1]] if "$ref" in ref_or_schema else ref_or_schema

    upload = resolve(post["requestBody"]["content"]["multipart/form-data"]["schema"])["properties"]
    assert upload["image"]["format"] == "binary"  # a file picker in the docs, not a URI
    assert upload["model"].get("default") == ""  # "Try it out" must not send model=string
    for status in ("400", "401", "413", "429", "500"):
        error = resolve(post["responses"][status]["content"]["application/json"]["schema"])
        assert "error" in error["properties"], status
    listing = doc["paths"]["/api/v1/recognitions/"]["get"]
    page = resolve(listing["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"count", "next", "previous", "results"} <= set(page["properties"])
    assert {"page", "page_size", "created_after"} <= {p["name"] for p in listing["parameters"]}
    assert "400" in listing["responses"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_create_api_token_prints_a_token_that_works(client, line_png):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_api_token", "alice", stdout=out, stderr=StringIO())
    token = out.getvalue().strip()
    assert re.fullmatch(r"[0-9a-f]{40}", token)
    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    again = StringIO()
    call_command("create_api_token", "alice", stdout=again, stderr=StringIO())
    assert again.getvalue().strip() == token


def test_batch_with_the_same_image_twice_stores_and_runs_it_once(api, line_png, monkeypatch):
    from recognition import Recognizer

    runs = []
    real = Recognizer.recognize
    monkeypatch.setattr(Recognizer, "recognize", lambda self, sources: runs.append(len(sources)) or
                        real(self, sources))
    files = [SimpleUploadedFile("a.png", line_png), SimpleUploadedFile("b.png", line_png)]
    results = api.post(URL + "batch/", {"images": files}, format="multipart").json()["results"]
    assert all("result" in r for r in results)
    assert results[0]["result"]["id"] == results[1]["result"]["id"]
    assert [r["result"]["cached"] for r in results] == [False, True]
    assert runs == [1]
    assert StoredImage.objects.count() == 1 and Recognition.objects.count() == 1


def test_throttling_is_shared_across_workers_through_redis(api, settings, monkeypatch):
    """With REDIS_URL the per-user budget lives in Redis, so every worker counts the same requests."""
    import redis
    from rest_framework.throttling import UserRateThrottle

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/min"})
    assert api.get(URL).status_code == 200 and api.get(URL).status_code == 200
    assert any(key.startswith(b":1:throttle_user_") for key in redis.Redis.from_url(url).keys())
    _assert_error(api.get(URL), 429, "throttled")
    cache.clear()
