"""Both endpoints read a line the same, whatever else is in the request; non-lines are a 4xx."""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ocr_app.models import Recognition, StoredImage
from tests.rendering import render_line
from tests.service.conftest import media_files

pytestmark = pytest.mark.django_db
URL = "/api/v1/recognitions/"
TEXTS = ["قال أبو محمد", "سنة 45", "ثم دخلت سنة ست وعشرين", "انظر الجزء 12 من الكتاب"]


def png(grey: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes; another compression level gives other bytes (another image for the cache), same pixels."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def test_single_and_batch_endpoints_agree_beside_lines_ten_times_wider(api):
    greys = [render_line(t) for t in TEXTS]
    wide = [render_line(" ".join([TEXTS[2]] * 10)), render_line(" ".join([TEXTS[3]] * 10))]
    single = [api.post(URL, {"image": SimpleUploadedFile("one.png", png(g, 1))}, format="multipart").json()
              for g in greys]
    assert single[0]["text"]
    files = [SimpleUploadedFile("wide.png", png(wide[0]))]
    files += [SimpleUploadedFile(f"{i}.png", png(g, 9)) for i, g in enumerate(greys)]
    files += [SimpleUploadedFile("wide2.png", png(wide[1]))]
    files += [SimpleUploadedFile(f"again{i}.png", png(greys[i % len(greys)], i % 5 + 2)) for i in range(26)]
    assert len(files) == 32
    results = api.post(URL + "batch/", {"images": files}, format="multipart").json()["results"]
    batched = [r["result"] for r in results[1:1 + len(greys)]]
    assert all(b["cached"] is False for b in batched)  # really recognised again, not the stored answer
    for one, other in zip(single, batched):
        assert one["text"] == other["text"]
        assert one["confidence"] == pytest.approx(other["confidence"], abs=1e-4)
        assert np.allclose([c["confidence"] for c in one["characters"]],
                           [c["confidence"] for c in other["characters"]], atol=1e-4)


def blank_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@pytest.mark.parametrize("width, height", [(50_000, 1), (19_999_999, 1)])
def test_a_strip_that_is_not_a_line_is_a_clear_400_and_leaves_nothing(api, settings, width, height):
    response = api.post(URL, {"image": SimpleUploadedFile("strip.png", blank_png(width, height))},
                        format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_a_line_image"
    assert Recognition.objects.count() == 0 and StoredImage.objects.count() == 0 and not media_files(settings)


def test_in_a_batch_a_non_line_fails_only_itself(api, settings):
    files = [SimpleUploadedFile("strip.png", blank_png(50_000, 1)),
             SimpleUploadedFile("line.png", png(render_line(TEXTS[0])))]
    results = api.post(URL + "batch/", {"images": files}, format="multipart").json()["results"]
    assert results[0]["error"]["code"] == "not_a_line_image" and "result" in results[1]
    assert Recognition.objects.count() == 1 and len(media_files(settings)) == 1


def test_line_limits_come_from_settings(api, settings):
    settings.OCR_MAX_LINE_WIDTH = 100
    from ocr_app import engine

    engine.forget_loaded_models()
    try:
        response = api.post(URL, {"image": SimpleUploadedFile("l.png", png(render_line(TEXTS[2])))},
                            format="multipart")
        assert response.status_code == 400 and response.json()["error"]["code"] == "not_a_line_image"
    finally:
        engine.forget_loaded_models()
