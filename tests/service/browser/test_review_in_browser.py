import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from ocr_app.jobs import runner
from ocr_app.jobs import services as job_services
from ocr_app.jobs.models import PageLine
from ocr_app.models import Recognition
from ocr_app.review import services as review_services
from ocr_app.review.models import ReviewClaim
from tests.service import job_pages
from tests.service.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, Visit
from tests.service.review_lines import LINES, recognise_lines

pytestmark = pytest.mark.browser


@pytest.fixture
def worst_first(user):
    """Six lines read by the shipped model, in the order the queue gives them."""
    lines = recognise_lines(user, 6)
    return [r.pk for r in sorted(lines, key=lambda r: (r.confidence, r.pk))]


def a_correction_of(pk) -> str:
    """What the line really says (LINES were recognised in order), or that with a comma if the model read it right."""
    line = Recognition.objects.get(pk=pk)
    truth = LINES[sorted(Recognition.objects.values_list("pk", flat=True)).index(pk)][0]
    return truth if truth != line.text else truth + "،"


def focused_id(page) -> str:
    return page.evaluate("document.activeElement.id")


def open_line(page, pk):
    page.wait_for_url(f"**/review/lines/{pk}/")
    expect(page.locator("#line-text")).to_be_focused()


def test_review_lines_with_the_keyboard_only(visit, reviewer, worst_first):
    v = visit(reviewer)
    page = v.page
    first, second, third, fourth, fifth, sixth = worst_first
    page.goto("/review/")
    page.evaluate("document.fonts.ready")
    v.screenshot("review-queue.png")
    assert v.unlabelled_controls() == [] and v.fits_width()
    assert focused_id(page) == "start-reviewing"
    page.keyboard.press("Enter")

    open_line(page, first)                        # unchanged: verified
    page.keyboard.press("Enter")

    open_line(page, second)                       # retyped: corrected
    correction = a_correction_of(second)
    page.keyboard.press("Control+A")
    page.keyboard.type(correction)
    page.evaluate("document.fonts.ready")
    v.screenshot("review-correcting.png")
    page.keyboard.press("Enter")

    open_line(page, third)                        # skipped: left for later
    page.keyboard.press("ArrowDown")

    open_line(page, fourth)                       # edited, then the edit undone: verified
    page.keyboard.type(" زائد")
    page.keyboard.press("Escape")
    assert page.locator("#line-text").input_value() == Recognition.objects.get(pk=fourth).text
    page.keyboard.press("Enter")

    open_line(page, fifth)                        # a character the Latin keyboard lacks: corrected
    page.keyboard.press("End")
    page.keyboard.type("؟")
    page.keyboard.press("Enter")

    open_line(page, sixth)                        # back up to the fifth, which shows its correction
    page.keyboard.press("ArrowUp")
    open_line(page, fifth)
    assert page.locator("#line-text").input_value().endswith("؟")
    page.keyboard.press("ArrowDown")              # and on again, the sixth still mine
    open_line(page, sixth)
    page.keyboard.press("Enter")

    page.wait_for_url("**/review/?done=1")
    expect(page.locator("main")).to_contain_text("Nothing left to claim in this queue (you skipped 1 line)")
    expect(page.locator("#reviewed-today")).to_have_text("5")

    lines = {r.pk: r for r in Recognition.objects.all()}
    assert [lines[pk].status for pk in worst_first] == [
        "verified", "corrected", "unreviewed", "verified", "corrected", "verified"]
    assert lines[second].corrected_text == correction
    assert lines[fifth].corrected_text == lines[fifth].text + "؟"
    assert all(lines[pk].reviewed_by == reviewer for pk in worst_first if pk != third)
    assert lines[third].reviewed_by is None
    assert v.outside_requests() == []


def test_the_lease_keeps_two_reviewers_apart(visit, reviewer, staff, worst_first):
    nadia, boss = visit(reviewer).page, visit(staff, viewport=PHONE)
    nadia.goto("/review/")
    expect(nadia.locator("#start-reviewing")).to_be_focused()  # the page's script has run: Enter starts
    nadia.keyboard.press("Enter")
    open_line(nadia, worst_first[0])
    boss.page.goto("/review/")
    expect(boss.page.locator("#start-reviewing")).to_be_focused()
    boss.page.keyboard.press("Enter")
    open_line(boss.page, worst_first[1])          # not the line Nadia holds
    assert boss.fits_width() and boss.unlabelled_controls() == []

    boss.page.goto(f"/review/lines/{worst_first[0]}/")
    expect(boss.page.get_by_role("alert")).to_contain_text("nadia is reviewing this line")
    boss.page.keyboard.press("Enter")             # "take the next free line": the one he still holds
    open_line(boss.page, worst_first[1])


def test_an_empty_text_is_refused_on_screen(visit, reviewer, worst_first):
    page = visit(reviewer).page
    page.goto(f"/review/lines/{worst_first[0]}/")
    expect(page.locator("#line-text")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.press("Enter")
    expect(page.locator("#review-error")).to_contain_text("the corrected text is empty")
    expect(page.locator("#line-text")).to_be_focused()
    page.locator(".keyboard .key", has_text="ة").click()   # the on-screen row types into the field
    assert page.locator("#line-text").input_value() == "ة"
    assert Recognition.objects.get(pk=worst_first[0]).status == "unreviewed"


def test_a_page_line_is_reviewed_in_its_page(visit, reviewer, user):
    pages = [job_pages.small_page(seed, lines=4) for seed in (6, 7)]
    job = job_services.create_job(user, [("Kitab.pdf", job_pages.pdf(pages))], name="Kitab")
    assert runner.run_pending() == 2
    recognise_lines(user, 2)                      # single lines, outside the book
    in_book = sorted(Recognition.objects.filter(page_lines__page__job=job), key=lambda r: (r.confidence, r.pk))
    v = visit(reviewer)
    page = v.page
    page.goto("/review/")
    page.get_by_label("Job (book)").select_option(label=f"#{job.pk} Kitab")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(f"**/review/?job={job.pk}*")
    expect(page.locator("table.queue tbody tr")).to_have_count(len(in_book))
    page.locator("#start-reviewing").focus()
    with page.expect_response(lambda r: "/thumbnail.png" in r.url) as thumbnail:
        page.keyboard.press("Enter")
    assert thumbnail.value.status == 200 and thumbnail.value.header_value("content-type") == "image/png"
    page.wait_for_url(f"**/review/lines/{in_book[0].pk}/?job={job.pk}&status=unreviewed")
    expect(page.locator("#line-text")).to_be_focused()
    link = PageLine.objects.select_related("page").get(recognition=in_book[0], page__job=job)
    expect(page.locator("#page-context figcaption")).to_contain_text(
        f"Line {link.index} of {link.page.line_count} on page {link.page.name} of job #{job.pk} Kitab")
    polygon = page.locator("#page-context polygon").bounding_box()
    picture = page.locator("#page-context svg").bounding_box()
    ys = [y for _, y in link.polygon]   # the outline sits where the line is on the page (centres: the box has the stroke)
    middle = (polygon["y"] + polygon["height"] / 2 - picture["y"]) / picture["height"]
    assert abs(middle - (min(ys) + max(ys)) / 2 / link.page.height) < 0.01
    page.evaluate("document.fonts.ready")
    v.screenshot("review-page-line.png", full_page=True)
    page.keyboard.press("Enter")                  # saved unchanged: verified, and the next line of the book
    page.wait_for_url(f"**/review/lines/{in_book[1].pk}/?job={job.pk}&status=unreviewed")
    assert Recognition.objects.get(pk=in_book[0].pk).status == "verified"
    assert v.unlabelled_controls() == [] and v.fits_width()
    assert v.outside_requests() == []



@pytest.fixture
def browser_with_back_forward_cache(chromium):
    """Chromium as people run it: Playwright turns its back-forward cache off, this one keeps it."""
    browser = chromium.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                           ignore_default_args=["--disable-back-forward-cache"])
    yield browser
    browser.close()


def test_back_a_refused_and_a_failed_save_leave_the_line_page_working(
        browser_with_back_forward_cache, live_server, reviewer, second_reviewer):
    first, second, third = [r.pk for r in sorted(recognise_lines(reviewer, 3), key=lambda r: (r.confidence, r.pk))]
    v = Visit(browser_with_back_forward_cache, live_server.url).sign_in_as(reviewer)
    page, error = v.page, v.page.locator("#review-error")
    try:
        page.goto(f"/review/lines/{first}/")
        expect(page.locator("#line-text")).to_be_focused()
        page.keyboard.press("Enter")
        open_line(page, second)
        saved_at = Recognition.objects.get(pk=first).reviewed_at
        # Back to the saved line: restored from the back-forward cache, its script was still busy with the save
        # that had moved on, and Enter did nothing, without a word. Now it is loaded again (no-store) or, in a
        # browser that restores it anyway, its pageshow handler ends that state (both checked with this test).
        page.go_back(wait_until="commit")          # a page restored from the cache fires no load event
        expect(page).to_have_url(re.compile(rf"/review/lines/{first}/$"))
        expect(page.locator("#line-text")).to_be_focused()
        page.keyboard.press("Enter")
        open_line(page, second)
        assert Recognition.objects.get(pk=first).reviewed_at > saved_at   # saved again

        # nadia's lease lapses and omar reviews her line: her save is refused, and she is told why
        ReviewClaim.objects.filter(reviewer=reviewer).update(expires_at=timezone.now() - timedelta(seconds=1))
        review_services.save(Recognition.objects.get(pk=second), second_reviewer, LINES[0][0])
        page.keyboard.press("Enter")
        expect(error).to_contain_text("omar saved this line after you opened it")
        expect(page.locator("#line-text")).to_be_focused()
        page.keyboard.press("ArrowDown")           # and she can move on

        open_line(page, third)                     # a save the network loses is said, and can be tried again
        page.route(re.compile(rf"/review/lines/{third}/save"), lambda route: route.abort())
        page.keyboard.press("Enter")
        expect(error).to_contain_text("The server could not be reached")
        expect(page.locator("#line-text")).to_be_focused()
        page.unroute(re.compile(rf"/review/lines/{third}/save"))
        # a server that never answers: after the page's timeout (shortened here) it says so, and Enter tries again
        pending = []
        page.route(re.compile(rf"/review/lines/{third}/save"), lambda route: pending.append(route))  # never answered
        page.evaluate("document.getElementById('review-form').dataset.timeoutMs = '300'")
        page.keyboard.press("Enter")
        expect(error).to_contain_text("The server did not answer within")
        expect(page.locator("#line-text")).to_be_focused()
        page.unroute(re.compile(rf"/review/lines/{third}/save"))
        page.keyboard.press("Enter")
        page.wait_for_url("**/review/?done=1")
        assert Recognition.objects.get(pk=third).reviewed_by == reviewer
        assert Recognition.objects.get(pk=second).reviewed_by == second_reviewer
    finally:
        v.close()


def test_a_browser_without_abortsignal_timeout_still_saves(visit, reviewer, worst_first):
    """AbortSignal.timeout (Chromium 103, Safari 16, Firefox 100) was called on every save: in an older browser it
    threw before the request went out, and every save said 'The server could not be reached'."""
    v = visit(reviewer)
    page = v.page
    page.add_init_script("delete AbortSignal.timeout")
    page.goto(f"/review/lines/{worst_first[0]}/")
    expect(page.locator("#line-text")).to_be_focused()
    assert page.evaluate("typeof AbortSignal.timeout") == "undefined"
    page.keyboard.press("Enter")
    open_line(page, worst_first[1])
    assert Recognition.objects.get(pk=worst_first[0]).reviewed_by == reviewer
    # and the timeout still holds: a save never answered gives up and says so
    pending = []
    page.route(re.compile(rf"/review/lines/{worst_first[1]}/save"), lambda route: pending.append(route))
    page.evaluate("document.getElementById('review-form').dataset.timeoutMs = '300'")
    page.keyboard.press("Enter")
    expect(page.locator("#review-error")).to_contain_text("The server did not answer within")
    expect(page.locator("#line-text")).to_be_focused()


def test_a_line_saved_by_someone_else_meanwhile_shows_their_reading_and_enter_again_saves_over_it(
        visit, reviewer, second_reviewer, worst_first):
    """The 409 line_changed used to repeat on every Enter until the page was reloaded."""
    page = visit(reviewer).page
    line = worst_first[0]
    page.goto(f"/review/lines/{line}/")
    expect(page.locator("#line-text")).to_be_focused()
    # nadia's lease lapses with the page open; omar takes the line and saves his reading
    ReviewClaim.objects.filter(reviewer=reviewer).update(expires_at=timezone.now() - timedelta(seconds=1))
    review_services.save(Recognition.objects.get(pk=line), second_reviewer, "قراءة عمر")
    page.keyboard.press("Control+A")
    page.keyboard.type("قراءة نادية")
    page.keyboard.press("Enter")
    alert = page.locator("#review-error")
    expect(alert).to_contain_text("omar saved this line after you opened it")
    expect(alert).to_contain_text("قراءة عمر")
    assert Recognition.objects.get(pk=line).final_text == "قراءة عمر"   # nothing overwritten unseen
    expect(page.locator("#line-text")).to_be_focused()
    assert page.locator("#line-text").input_value() == "قراءة نادية"   # her edit is still in the box
    page.keyboard.press("Enter")                                       # seen now: hers replaces his
    open_line(page, worst_first[1])
    saved = Recognition.objects.get(pk=line)
    assert (saved.final_text, saved.reviewed_by) == ("قراءة نادية", reviewer)
