"""The review workspace with lines that came from pages: the line in its page, and the queue by job (book)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ocr_app.jobs import runner
from ocr_app.jobs.models import PageLine
from ocr_app.models import Recognition
from ocr_app.review import selectors
from tests.service import job_pages
from tests.service.review_lines import recognise_lines

pytestmark = pytest.mark.django_db


def _book(api, name: str, seeds: list[int], pdf: bool = False) -> int:
    pages = [job_pages.small_page(seed) for seed in seeds]
    files = [SimpleUploadedFile(f"{name}.pdf", job_pages.pdf(pages))] if pdf else \
        [SimpleUploadedFile(f"{name}-{seed}.png", job_pages.png(page)) for seed, page in zip(seeds, pages)]
    answer = api.post("/api/v1/jobs/", {"files": files, "name": name}, format="multipart")
    assert answer.status_code == 202, answer.content
    runner.run_pending()
    return answer.json()["id"]


def test_a_page_line_is_shown_on_its_page(api, client, reviewer, user):
    job_id = _book(api, "Tarikh", [0, 1], pdf=True)
    link = PageLine.objects.select_related("page").filter(page__job_id=job_id).order_by("page__index", "index")[1]
    client.force_login(reviewer)
    html = client.get(f"/review/lines/{link.recognition_id}/").content.decode()
    svg = re.search(r'<svg viewBox="0 0 (\d+) (\d+)".*?</svg>', html, re.S)
    assert svg and (int(svg[1]), int(svg[2])) == (link.page.width, link.page.height)
    points = re.search(r'<polygon points="([^"]+)"', svg[0])[1]
    assert [[int(v) for v in p.split(",")] for p in points.split()] == link.polygon
    assert f"Line {link.index} of {link.page.line_count} on page <strong>{link.page.name}</strong>" in html
    assert f"?job={job_id}" in html

    thumbnail_url = re.search(r'<image href="([^"]+)"', svg[0])[1]
    answer = client.get(thumbnail_url)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/png"
    thumbnail = Image.open(io.BytesIO(answer.content))   # a page of a PDF, rendered: a browser cannot show it
    assert thumbnail.width <= 1000
    assert abs(thumbnail.width / thumbnail.height - link.page.width / link.page.height) < 0.01
    assert client.get(thumbnail_url).content == answer.content   # stored once, served again

    client.force_login(user)   # the owner of the job sees their page; another user does not
    assert client.get(thumbnail_url).status_code == 200
    client.logout()
    assert client.get(thumbnail_url).status_code == 302


def test_a_single_line_upload_has_no_page(client, reviewer, user):
    line = recognise_lines(user, 1)[0]
    assert selectors.page_context(line) is None
    client.force_login(reviewer)
    html = client.get(f"/review/lines/{line.pk}/").content.decode()
    assert 'id="page-context"' not in html


def test_another_user_does_not_see_the_page(api, client, other_user):
    job_id = _book(api, "Sira", [2])
    page_id = PageLine.objects.filter(page__job_id=job_id).first().page_id
    client.force_login(other_user)
    assert client.get(f"/pages/{page_id}/thumbnail.png").status_code == 404


def test_the_queue_is_filtered_by_job_and_stays_worst_first(api, client, reviewer, user):
    first, second = _book(api, "Tarikh", [0]), _book(api, "Sira", [3])
    recognise_lines(user, 2)  # single lines belong to no job
    client.force_login(reviewer)
    html = client.get(f"/review/?job={second}").content.decode()
    in_second = Recognition.objects.filter(page_lines__page__job_id=second).distinct()
    shown = [int(pk) for pk in re.findall(r'aria-label="Review line (\d+)"', html)]
    assert shown == [r.pk for r in sorted(in_second, key=lambda r: (r.confidence, r.pk))] and shown
    assert f'<option value="{first}">#{first} Tarikh</option>' in html
    assert f'<option value="{second}" selected>#{second} Sira</option>' in html
    assert ", line 1</td>" in html   # the page column names each line's page
    assert list(selectors.review_queue({"job": str(first)})) == \
        sorted(Recognition.objects.filter(page_lines__page__job_id=first), key=lambda r: (r.confidence, r.pk))
    bad = client.get("/review/?job=nope")
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()

    # Starting from a filtered queue claims a line of that book, and the line page keeps the filter
    started = client.post(f"/review/start/?job={first}")
    pk = int(re.search(r"/review/lines/(\d+)/", started["Location"])[1])
    assert started["Location"].endswith(f"?job={first}")
    assert PageLine.objects.filter(page__job_id=first, recognition_id=pk).exists()


def test_a_page_sent_on_its_own_is_shown_to_its_sender_and_to_reviewers(api, client, reviewer, user, other_user):
    answer = api.post("/api/v1/pages/", {"image": SimpleUploadedFile("scan.png", job_pages.png(job_pages.small_page(4)))},
                      format="multipart")
    assert answer.status_code == 201, answer.content
    url = f"/pages/{answer.json()['id']}/thumbnail.png"
    for person, code in ((user, 200), (reviewer, 200), (other_user, 404)):
        client.force_login(person)
        assert client.get(url).status_code == code, person
    line_id = answer.json()["regions"][0]["lines"][0]["recognition_id"]
    client.force_login(reviewer)
    html = client.get(f"/review/lines/{line_id}/").content.decode()
    assert f'<image href="{url}"' in html and "of job" not in html


def test_a_page_sent_on_its_own_gets_its_thumbnail_under_its_own_pixel_limit(api, client, user, settings):
    """The thumbnail was decoded under the jobs' limit: a page the pages API took under a larger one had none."""
    data = job_pages.png(job_pages.small_page(4))   # 900 x 420
    settings.OCR_JOB_MAX_PAGE_PIXELS = 900 * 420 // 2
    answer = api.post("/api/v1/pages/", {"image": SimpleUploadedFile("scan.png", data)}, format="multipart")
    assert answer.status_code == 201, answer.content
    client.force_login(user)
    thumbnail = client.get(f"/pages/{answer.json()['id']}/thumbnail.png")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/png"
