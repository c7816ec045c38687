import datetime

import pytest
from django.utils import timezone

from ocr_app.models import Recognition, ReviewClaim
from ocr_app.review import selectors, services
from tests.service.review_lines import recognise_lines

pytestmark = pytest.mark.django_db


@pytest.fixture
def lines(user):
    return recognise_lines(user, 5)


def worst_first_ids(lines):
    return [r.pk for r in sorted(lines, key=lambda r: (r.confidence, r.pk))]


def test_only_staff_and_reviewers_get_the_workspace(client, user, staff, reviewer, lines):
    anonymous = client.get("/review/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(user)
    assert client.get("/review/").status_code == 403
    assert client.get(f"/review/lines/{lines[0].pk}/image").status_code == 403
    assert client.post(f"/review/lines/{lines[0].pk}/save", {"text": "x"},
                       content_type="application/json").status_code == 403
    for person in (staff, reviewer):
        client.force_login(person)
        assert client.get("/review/").status_code == 200
        image = client.get(f"/review/lines/{lines[0].pk}/image")
        assert image.status_code == 200 and b"".join(image.streaming_content).startswith(b"\x89PNG")


def test_queue_is_worst_first_and_filtered(client, reviewer, lines):
    assert len({r.confidence for r in lines}) > 1, "the test lines should not all read alike"
    assert list(selectors.review_queue({}).values_list("pk", flat=True)) == worst_first_ids(lines)
    client.force_login(reviewer)
    html = client.get("/review/").content.decode()
    positions = [html.index(f'aria-label="Review line {pk}"') for pk in worst_first_ids(lines)]
    assert positions == sorted(positions)
    middle = sorted(r.confidence for r in lines)[2]
    confident = client.get(f"/review/?min_confidence={middle}").content.decode()
    assert all((f'"Review line {r.pk}"' in confident) == (r.confidence >= middle) for r in lines)
    bad = client.get("/review/?max_confidence=lots")
    assert bad.status_code == 200 and "Enter a number" in bad.content.decode()
    services.save(lines[0], reviewer, lines[0].text)
    assert lines[0].pk not in selectors.review_queue({}).values_list("pk", flat=True)
    assert list(selectors.review_queue({"status": "verified"}).values_list("pk", flat=True)) == [lines[0].pk]


def test_line_page_shows_the_line_for_editing(client, reviewer, lines, settings):
    line = lines[0]
    client.force_login(reviewer)
    html = client.get(f"/review/lines/{line.pk}/").content.decode()
    assert 'id="line-text"' in html and 'lang="ar" dir="rtl"' in html
    assert f'value="{line.text}"' in html and '<label for="line-text"' in html
    low = [c for c in line.characters if c["confidence"] < settings.OCR_REVIEW_LOW_CONFIDENCE]
    assert html.count('<mark class="low"') == len(low) + 1  # + the one in the explanation
    for char in selectors.KEYBOARD_ROW:
        assert f'data-char="{char}"' in html
    assert ReviewClaim.objects.get(recognition=line).reviewer == reviewer
    # Without review.js, Enter submits the form natively: a POST (refused), never a GET with the text and the
    # CSRF token in the address, the browser's history and the server's log.
    assert '<form id="review-form" class="review" method="post"' in html and "<noscript>" in html
    assert client.post(f"/review/lines/{line.pk}/", {"text": "x"}).status_code == 405


def test_save_marks_verified_or_corrected_and_moves_on(client, reviewer, lines):
    client.force_login(reviewer)
    order = worst_first_ids(lines)
    first = Recognition.objects.get(pk=order[0])
    answer = client.post(f"/review/lines/{first.pk}/save", {"text": first.text}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "verified" and answer.json()["next_url"].startswith(f"/review/lines/{order[1]}/")
    first.refresh_from_db()
    assert first.status == "verified" and first.reviewed_by == reviewer and first.corrected_text == ""

    second = Recognition.objects.get(pk=order[1])
    answer = client.post(f"/review/lines/{second.pk}/save", {"text": "وفيها توفي الشيخ الإمام"},
                         content_type="application/json")
    assert answer.json()["status"] == "corrected"
    second.refresh_from_db()
    assert second.status == "corrected" and second.corrected_text == "وفيها توفي الشيخ الإمام"

    third = Recognition.objects.get(pk=order[2])
    empty = client.post(f"/review/lines/{third.pk}/save", {"text": "  "}, content_type="application/json")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_text"
    third.refresh_from_db()
    assert third.status == "unreviewed" and third.reviewed_by is None

    progress = selectors.progress(reviewer, selectors.review_queue({}))
    assert (progress.reviewed_today, progress.left_in_queue) == (2, 3)


def test_the_lease_keeps_two_reviewers_apart(client, reviewer, second_reviewer, lines):
    queue = selectors.review_queue({})
    mine = services.claim_next(reviewer, queue)
    theirs = services.claim_next(second_reviewer, queue)
    assert mine.pk != theirs.pk
    assert mine.pk == worst_first_ids(lines)[0] and theirs.pk == worst_first_ids(lines)[1]

    client.force_login(second_reviewer)
    taken = client.get(f"/review/lines/{mine.pk}/")
    assert taken.status_code == 409 and "nadia" in taken.content.decode()
    refused = client.post(f"/review/lines/{mine.pk}/save", {"text": mine.text}, content_type="application/json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "line_claimed"
    mine.refresh_from_db()
    assert mine.status == "unreviewed"

    # A reviewer holds one line at a time: taking another frees the last.
    assert ReviewClaim.objects.filter(reviewer=second_reviewer).count() == 1
    # A lapsed lease frees the line for the next reviewer who comes to it.
    ReviewClaim.objects.filter(reviewer=reviewer).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert client.get(f"/review/lines/{mine.pk}/").status_code == 200
    assert ReviewClaim.objects.get(recognition=mine).reviewer == second_reviewer


def test_skip_leaves_the_line_to_others(client, reviewer, second_reviewer, lines):
    order = worst_first_ids(lines)
    client.force_login(reviewer)
    start = client.post("/review/start/")
    assert start.status_code == 302 and start["Location"] == f"/review/lines/{order[0]}/"
    skipped = client.post(f"/review/lines/{order[0]}/skip", content_type="application/json")
    assert skipped.json()["next_url"] == f"/review/lines/{order[1]}/"
    assert Recognition.objects.get(pk=order[0]).status == "unreviewed"
    assert services.claim_next(second_reviewer, selectors.review_queue({})).pk == order[0]


def test_the_queue_ends(client, reviewer, lines):
    client.force_login(reviewer)
    for line in lines:
        services.save(line, reviewer, line.text)
    assert client.post("/review/start/")["Location"] == "/review/?done=1"
    assert "Nothing left to claim" in client.get("/review/?done=1").content.decode()


@pytest.mark.parametrize("text, code", [
    ("\u200f", "empty_text"),            # a bidi mark alone: nothing left once normalised
    ("\u064e\u064f", "empty_text"),      # harakat alone
    ("\u200b\u200c", "empty_text"),      # zero-width characters alone
    ("\x00", "invalid_text"),            # NUL: PostgreSQL refuses it
    ("قال\x00أبو", "invalid_text"),
    ("قال\x01", "invalid_text"),
    ("\x7f", "invalid_text"),
    ("ق" * 100_000, "text_too_long"),     # longer than any line the service reads can be
])
def test_a_text_that_cannot_be_a_lines_reading_is_a_json_400_and_stores_nothing(client, reviewer, lines, text, code):
    client.force_login(reviewer)
    line = lines[0]
    answer = client.post(f"/review/lines/{line.pk}/save", {"text": text}, content_type="application/json")
    assert answer.status_code == 400 and answer["Content-Type"].startswith("application/json"), answer.content[:300]
    assert answer.json()["error"]["code"] == code and answer.json()["error"]["message"]
    line.refresh_from_db()
    assert line.status == "unreviewed" and line.corrected_text == "" and line.reviewed_by is None


@pytest.mark.parametrize("body", ["[]", '"text"', "1", "null"])
def test_a_json_body_that_is_not_an_object_is_a_json_400(client, reviewer, lines, body):
    client.force_login(reviewer)
    answer = client.post(f"/review/lines/{lines[0].pk}/save", body, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_request"


def test_presentation_forms_and_a_long_real_line_are_stored_normalised(client, reviewer, lines):
    client.force_login(reviewer)
    line = lines[0]
    answer = client.post(f"/review/lines/{line.pk}/save", {"text": "ﷲ ﻻ " + "ق" * 300},
                         content_type="application/json")
    assert answer.status_code == 200, answer.content
    line.refresh_from_db()
    assert line.status == "corrected" and line.corrected_text == "الله لا " + "ق" * 300


def _seen_on_page(html: str) -> str:
    import re

    return re.search(r'data-seen="([^"]*)"', html).group(1)


def test_a_stale_tab_does_not_overwrite_a_review_saved_after_its_lease_lapsed(client, reviewer, second_reviewer,
                                                                              lines):
    from django.test import Client

    line = lines[0]
    client.force_login(reviewer)
    seen = _seen_on_page(client.get(f"/review/lines/{line.pk}/").content.decode())
    assert seen == ""   # unreviewed
    # nadia's tab stays open past her lease; omar opens the line and corrects it
    ReviewClaim.objects.filter(reviewer=reviewer).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    other = Client()
    other.force_login(second_reviewer)
    theirs = _seen_on_page(other.get(f"/review/lines/{line.pk}/").content.decode())
    saved = other.post(f"/review/lines/{line.pk}/save", {"text": "قال أبو محمد", "seen": theirs},
                       content_type="application/json")
    assert saved.status_code == 200, saved.content
    stale = client.post(f"/review/lines/{line.pk}/save", {"text": "قال ابو محمد", "seen": seen},
                        content_type="application/json")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "line_changed"
    assert "omar" in stale.json()["error"]["message"]
    details = stale.json()["error"]["details"]
    assert details["text"] == "قال أبو محمد" and details["reviewed_by"] == "omar" and details["seen"] != seen
    line.refresh_from_db()
    assert line.reviewed_by == second_reviewer and line.final_text == "قال أبو محمد"
    # opened again, the page shows omar's review, and a save from it goes through
    seen = _seen_on_page(client.get(f"/review/lines/{line.pk}/").content.decode())
    again = client.post(f"/review/lines/{line.pk}/save", {"text": "قال ابو محمد", "seen": seen},
                        content_type="application/json")
    assert again.status_code == 200 and Recognition.objects.get(pk=line.pk).reviewed_by == reviewer


def test_a_review_the_reviewer_saved_since_is_theirs_to_change(client, reviewer, second_reviewer, lines):
    """A second tab, or the line page shown again from the browser's cache: the stamp is stale, but the review
    saved since is the reviewer's own, not someone else's to protect (it was a 409 naming them)."""
    line = lines[0]
    client.force_login(reviewer)
    seen = _seen_on_page(client.get(f"/review/lines/{line.pk}/").content.decode())
    first = client.post(f"/review/lines/{line.pk}/save", {"text": "قال ابو محمد", "seen": seen},
                        content_type="application/json")
    assert first.status_code == 200, first.content
    again = client.post(f"/review/lines/{line.pk}/save", {"text": "قال أبو محمد", "seen": seen},
                        content_type="application/json")
    assert again.status_code == 200, again.content
    line.refresh_from_db()
    assert line.reviewed_by == reviewer and line.final_text == "قال أبو محمد"
    # someone else's stale stamp is still refused
    ReviewClaim.objects.all().delete()
    with pytest.raises(services.LineChangedError):
        services.save(line, second_reviewer, "قال", seen=seen)
