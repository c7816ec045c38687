"""Every failure under /api/ is JSON with a 4xx, or a JSON 500 with a request id: never HTML."""

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ocr_app.models import Recognition

pytestmark = pytest.mark.django_db
URL = "/api/v1/recognitions/"


def _assert_json_error(response, status, code):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


@pytest.mark.parametrize("value", [
    "2026-02-30", "2026-13-01", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+05:00", "2026-01-01\x00",
    "not a date",
])
@pytest.mark.parametrize("field", ["created_after", "created_before"])
def test_impossible_or_overflowing_dates_are_a_filter_error(api, field, value):
    _assert_json_error(api.get(URL, {field: value}), 400, "invalid_filter")


def test_extreme_but_valid_dates_still_filter(api):
    assert api.get(URL, {"created_after": "0001-01-01T05:00:00+05:00"}).json()["count"] == 0
    assert api.get(URL, {"created_before": "9999-12-31T23:59:59"}).json()["count"] == 0


@pytest.mark.parametrize("params", [{"model": "\x00"}, {"model": "a\x00b:1"}, {"min_confidence": "nan"},
                                    {"max_confidence": "inf"}])
def test_nul_and_non_finite_filters_are_refused(api, params):
    _assert_json_error(api.get(URL, params), 400, "invalid_filter")


@pytest.mark.parametrize("query", ["max_confidence=&min_confidence=false&min_confidence=",  # schemathesis found it
                                   "min_confidence=", "status=", "model=", "created_after=",
                                   "min_confidence=0.1&min_confidence=0.9", "status=verified&status=corrected"])
def test_an_empty_or_repeated_filter_is_refused_not_ignored(api, query):
    error = _assert_json_error(api.get(f"{URL}?{query}"), 400, "invalid_filter")
    assert "empty" in error["message"] or "times" in error["message"]


def test_nul_in_the_model_field_of_an_upload_is_refused(api, line_png):
    response = api.post(URL, {"image": SimpleUploadedFile("l.png", line_png), "model": "arabic\x00"},
                        format="multipart")
    _assert_json_error(response, 400, "invalid_request")
    assert Recognition.objects.count() == 0


def test_unknown_api_url_and_wrong_method_are_json(api):
    _assert_json_error(api.get("/api/v1/nothing-here/"), 404, "not_found")
    _assert_json_error(api.get("/api/nothing/"), 404, "not_found")
    _assert_json_error(api.delete(URL), 405, "method_not_allowed")
    _assert_json_error(api.get(URL + "999999/"), 404, "not_found")


def test_an_unexpected_exception_answers_json_with_a_logged_request_id(api, monkeypatch, caplog):
    from ocr_app import selectors

    def broken(*args, **kwargs):
        raise RuntimeError("a bug nobody anticipated")

    monkeypatch.setattr(selectors, "filter_recognitions", broken)
    with caplog.at_level(logging.ERROR, logger="ocr_app.errors"):
        response = api.get(URL)
    error = _assert_json_error(response, 500, "internal_error")
    assert "a bug nobody anticipated" not in response.content.decode()
    assert len(error["request_id"]) == 32
    logged = [r for r in caplog.records if error["request_id"] in r.getMessage()]
    assert logged and "a bug nobody anticipated" in logged[0].exc_text


def test_pages_outside_the_api_keep_html_errors(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


def test_the_front_door_is_not_a_404(client):
    response = client.get("/")
    assert response.status_code == 200 and b'id="image-input"' in response.content  # the upload page


@pytest.mark.parametrize("size", ["0", "-1", "null", "501", "٣"])
def test_a_page_size_out_of_range_is_a_filter_error(api, size):
    _assert_json_error(api.get(URL, {"page_size": size}), 400, "invalid_filter")


@pytest.mark.parametrize("query", ["page=abc", "page=0", "page=1.5", "page=-1", "page=", "page=1&page=2",
                                   "page_size=", "page_size=5&page_size=6", "page=" + "9" * 5000,
                                   "page_size=" + "9" * 5000])
@pytest.mark.parametrize("path", [URL, "/api/v1/jobs/"])
def test_a_malformed_page_number_is_a_filter_error_not_a_missing_list(api, path, query):
    """DRF answered 404 "Invalid page." (the list does not exist?) and took an empty or repeated one quietly."""
    error = _assert_json_error(api.get(f"{path}?{query}"), 400, "invalid_filter")
    assert "page" in error["message"] and len(error["message"]) < 200


def test_page_last_and_a_page_past_the_end(api):
    assert api.get(URL, {"page": "last"}).status_code == 200
    assert api.get(URL, {"page": "1"}).status_code == 200
    _assert_json_error(api.get(URL, {"page": "7"}), 404, "not_found")


def test_batch_items_must_be_strings(api):
    _assert_json_error(api.post(URL + "batch/", {"images": [{}]}, format="json"), 400, "invalid_request")


def test_a_bad_model_field_is_refused_even_when_every_image_is_bad(api):
    response = api.post(URL + "batch/", {"images": ["", "x"], "model": [1, 2]}, format="json")
    _assert_json_error(response, 400, "invalid_request")


LONE_SURROGATE = '"\\ud800"'   # valid JSON text, but no character: Python decodes it into an unencodable string


@pytest.mark.parametrize("url, body", [
    (URL, '{"image": "iVBORw0KGgo=", "model": ' + LONE_SURROGATE + '}'),
    (URL + "batch/", '{"images": ["iVBORw0KGgo="], "model": ' + LONE_SURROGATE + '}'),
    ("/api/v1/pages/", '{"image": "iVBORw0KGgo=", "model": ' + LONE_SURROGATE + '}'),
    (URL, '{"image": "iVBORw0KGgo=", "model": "a", "model": "b"}'),  # which one counts depends on the parser
    (URL, "[" * 100_000 + "]" * 100_000),                            # deeper than the json module recurses
])
def test_json_with_a_lone_surrogate_a_repeated_key_or_absurd_nesting_is_a_parse_error(api, url, body):
    error = _assert_json_error(api.post(url, body, content_type="application/json"), 400, "parse_error")
    assert any(why in error["message"] for why in ("surrogate", "twice", "nested too deeply"))
    assert Recognition.objects.count() == 0


def test_a_surrogate_pair_is_a_character_and_still_parses(api):
    body = '{"image": "@@", "model": "\\ud83d\\ude00"}'   # an emoji, spelled as JSON spells it
    _assert_json_error(api.post(URL, body, content_type="application/json"), 400, "invalid_base64")


@pytest.mark.parametrize("body", ['{"text": "a' + LONE_SURROGATE[1:] + '}',
                                  '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_the_review_workspace_refuses_them_too(client, staff, user, line_png, body):
    from ocr_app import services

    line = services.recognize_uploads(user, [services.decode_upload("l.png", line_png)])[0]
    client.force_login(staff)
    _assert_json_error(client.post(f"/review/lines/{line.pk}/save", body, content_type="application/json"), 400,
                       "parse_error")


@pytest.mark.parametrize("accept", ["text/html", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"])
def test_errors_are_json_when_a_browser_asks_for_html(api, client, accept):
    """A browser sends Accept: text/html; the browsable API would answer its errors as an HTML page."""
    _assert_json_error(api.get(URL + "999999/", HTTP_ACCEPT=accept), 404, "not_found")
    _assert_json_error(api.get(URL, {"min_confidence": "abc"}, HTTP_ACCEPT=accept), 400, "invalid_filter")
    _assert_json_error(api.get("/api/v1/jobs/999999/", HTTP_ACCEPT=accept), 404, "not_found")
    _assert_json_error(api.get(URL + "999999/", {"format": "api"}), 404, "not_found")
    _assert_json_error(client.get(URL, HTTP_ACCEPT=accept), 401, "not_authenticated")
    # a successful answer may still be the browsable page
    assert api.get(URL, HTTP_ACCEPT="text/html")["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("charset", ["zlib", "rot13", "base64", "hex"])
def test_a_json_charset_that_is_no_text_encoding_is_a_parse_error(api, charset):
    """Codecs that are not text encodings would transform the body (charset=zlib would inflate it)."""
    answer = api.post(URL, b'{"image": "@@"}', content_type=f"application/json; charset={charset}")
    error = _assert_json_error(answer, 400, "parse_error")
    assert "charset" in error["message"]


def test_a_json_body_in_a_text_encoding_still_parses(api):
    answer = api.post(URL, '{"image": "@@"}'.encode("utf-16"), content_type="application/json; charset=utf-16")
    _assert_json_error(answer, 400, "invalid_base64")


@pytest.mark.parametrize("path", ["/api/v1/recognitions/", "/api/v1/recognitions/{id}/", "/api/v1/models/",
                                  "/api/v1/jobs/"])
def test_an_unknown_format_is_a_bad_parameter_not_a_missing_page(api, line_png, path):
    """DRF answers ?format=NAME that the view does not render with 404: recognition 7 exists, csv is the list's."""
    created = api.post(URL, {"image": SimpleUploadedFile("l.png", line_png)}, format="multipart")
    assert created.status_code in (200, 201)
    url = path.format(id=created.json()["id"])
    assert api.get(url).status_code == 200
    error = _assert_json_error(api.get(url, {"format": "xlsx"}), 400, "invalid_request")
    assert "'xlsx'" in error["message"] and "json" in error["message"] and "api" not in error["message"].split()
    if "{id}" in path:
        _assert_json_error(api.get(url, {"format": "csv"}), 400, "invalid_request")
