import csv
import io

import pytest

from ocr_app.models import Recognition
from ocr_app.review import services as review_services
from tests.service.review_lines import recognise_lines

pytestmark = pytest.mark.django_db


def read_csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")  # spreadsheets read the Arabic as UTF-8
    return list(csv.DictReader(io.StringIO(body[1:])))


def test_api_csv_has_the_filtered_recognitions_of_the_caller(api, user, staff):
    lines = recognise_lines(user, 3)
    review_services.save(lines[0], staff, "=HYPERLINK(\"x\") قال")
    review_services.save(lines[1], staff, lines[1].text)

    response = api.get("/api/v1/recognitions/?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert sorted(int(r["id"]) for r in rows) == sorted(r.pk for r in lines)
    by_id = {int(r["id"]): r for r in rows}
    first = by_id[lines[0].pk]
    assert first["status"] == "corrected" and first["reviewed_by"] == "reviewer" and first["user"] == "reader"
    assert first["corrected_text"].startswith("'=")  # a formula stays text in a spreadsheet
    assert first["text"] == Recognition.objects.get(pk=lines[0].pk).text
    assert float(first["confidence"]) == pytest.approx(lines[0].confidence, abs=1e-4)
    assert first["model"] and first["model_version"] and first["created_at"] and first["reviewed_at"]
    assert by_id[lines[1].pk]["final_text"] == lines[1].text

    verified = read_csv(api.get("/api/v1/recognitions/?format=csv&status=verified"))
    assert [int(r["id"]) for r in verified] == [lines[1].pk]


def test_api_csv_errors_stay_json(api):
    response = api.get("/api/v1/recognitions/?format=csv&status=nonsense")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "invalid_filter"
    assert api.get("/api/v1/recognitions/?format=json").status_code == 200


def test_others_recognitions_stay_out_of_a_users_csv(api, other_user):
    theirs = recognise_lines(other_user, 2)
    rows = read_csv(api.get("/api/v1/recognitions/?format=csv"))
    assert rows == [] and theirs


def test_admin_exports_the_selected_recognitions(client, staff, user):
    lines = recognise_lines(user, 3)
    client.force_login(staff)
    response = client.post("/admin/ocr_app/recognition/", {
        "action": "export_csv", "_selected_action": [lines[0].pk, lines[2].pk]})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = read_csv(response)
    assert [int(r["id"]) for r in rows] == sorted([lines[0].pk, lines[2].pk])
    assert rows[0]["characters"].startswith("[{")
