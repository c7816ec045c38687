"""``Idempotency-Key`` on ``POST /api/v1/jobs/``: a retried POST never makes a second job.

A client whose POST reached the server but whose answer was lost (a dropped connection, an answer cut
short) sends the request again with the same key and gets the job the first one created.
"""

from __future__ import annotations

import threading
import time

import pytest

from ocr_app.jobs.models import Job, Page, PageFile
from tests.service import job_pages
from tests.service.conftest import media_files
from tests.service.test_jobs_api import _named

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def pages():
    return [job_pages.small_page(seed) for seed in range(2)]


def _post(api, files: dict[str, bytes], key: str | None, **fields):
    uploads = [_named(name, data) for name, data in files.items()]
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post("/api/v1/jobs/", {"files": uploads, **fields}, format="multipart", **headers)


def test_a_post_repeated_with_its_key_answers_the_first_job_and_stores_nothing(api, pages, settings):
    book = {"cover.png": job_pages.png(pages[0]), "book.pdf": job_pages.pdf(pages)}
    first = _post(api, book, "3b7e-retry-me", name="Diwan", formats="txt,alto")
    assert first.status_code == 202, first.content
    stored = sorted(media_files(settings))
    rows = (Job.objects.count(), Page.objects.count(), PageFile.objects.count())

    again = _post(api, book, "3b7e-retry-me", name="Diwan", formats="txt,alto")
    assert again.status_code == 200, again.content
    body, shown = dict(again.json()), dict(api.get(first.json()["url"]).json())
    assert body.pop("timings").keys() == shown.pop("timings").keys()   # queued_s grows as time passes
    assert body == shown   # the job, as a GET answers it
    assert again.json()["id"] == first.json()["id"]
    assert (Job.objects.count(), Page.objects.count(), PageFile.objects.count()) == rows == (1, 3, 2)
    assert sorted(media_files(settings)) == stored

    # without a key every POST is a job of its own, as before
    assert _post(api, book, None, name="Diwan", formats="txt,alto").status_code == 202
    assert Job.objects.count() == 2


@pytest.mark.parametrize("change", ["content", "file name", "file order", "name", "formats", "model"])
def test_a_key_sent_with_another_request_is_a_409_and_stores_nothing(api, pages, settings, change):
    cover, back = job_pages.png(pages[0]), job_pages.png(pages[1])
    first = _post(api, {"cover.png": cover, "back.png": back}, "key-1", name="Diwan")
    assert first.status_code == 202, first.content
    stored, rows = sorted(media_files(settings)), (Job.objects.count(), Page.objects.count())

    other, fields = {
        "content": ({"cover.png": back, "back.png": back}, {}),
        "file name": ({"cover-2.png": cover, "back.png": back}, {}),
        "file order": ({"back.png": back, "cover.png": cover}, {}),   # the same files: another book
        "name": ({"cover.png": cover, "back.png": back}, {"name": "Another"}),
        "formats": ({"cover.png": cover, "back.png": back}, {"formats": "txt"}),
        "model": ({"cover.png": cover, "back.png": back}, {"model": "arabic-crnn-v2-int8"}),
    }[change]
    fields = {"name": "Diwan", **fields}
    answer = _post(api, other, "key-1", **fields)
    assert answer.status_code == 409, answer.content
    error = answer.json()["error"]
    assert error["code"] == "idempotency_key_reused" and str(first.json()["id"]) in error["message"]
    assert error["details"] == {"job": first.json()["id"]}
    assert (Job.objects.count(), Page.objects.count()) == rows and sorted(media_files(settings)) == stored


# The same request sent another way: (first POST's fields, retry's fields). Absent fields are left out.
SAME_JOB = {
    "formats in one field, then in two": ({"formats": "txt,alto"}, {"formats": ["txt", "alto"]}),
    "formats in another order": ({"formats": "txt,alto"}, {"formats": "alto,txt"}),
    "formats in another case, padded, repeated": ({"formats": "txt,alto"}, {"formats": [" ALTO ,txt", "txt,"]}),
    "no formats, then all of them": ({}, {"formats": "hocr,page,alto,txt"}),
    "an empty model field, then none": ({"model": ""}, {}),
    "no model field, then an empty one": ({}, {"model": ""}),
    "no name, then the first file's": ({"name": ""}, {"name": "cover.png"}),
}


@pytest.mark.parametrize("case", SAME_JOB)
def test_a_retry_that_asks_for_the_same_job_another_way_answers_the_first_job(api, pages, settings, case):
    """The fingerprint is the job the request asks for, not how its fields were encoded: a client (or a proxy,
    or a form library) that encodes its retry differently still gets its job, and nothing is stored again."""
    first_fields, retry_fields = SAME_JOB[case]
    book = {"cover.png": job_pages.png(pages[0]), "back.png": job_pages.png(pages[1])}
    first = _post(api, book, "same-job", **first_fields)
    assert first.status_code == 202, first.content
    stored, rows = sorted(media_files(settings)), (Job.objects.count(), Page.objects.count())
    again = _post(api, book, "same-job", **retry_fields)
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert (Job.objects.count(), Page.objects.count()) == rows == (1, 2)
    assert sorted(media_files(settings)) == stored


@pytest.mark.parametrize("retry_formats", ["txt", "txt,alto,page", "alto", None])
def test_a_retry_that_asks_for_another_set_of_formats_is_a_409(api, pages, retry_formats):
    book = {"cover.png": job_pages.png(pages[0])}
    first = _post(api, book, "set-of-formats", formats="alto,txt")
    assert first.status_code == 202, first.content
    fields = {} if retry_formats is None else {"formats": retry_formats}   # none: all four
    answer = _post(api, book, "set-of-formats", **fields)
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["code"] == "idempotency_key_reused" and Job.objects.count() == 1


def test_a_retry_naming_the_model_is_another_request_than_one_naming_none(api, pages):
    """The model is compared as asked for, not as resolved: a request naming none gets whichever model is
    active when it is read, so it is not the same request as one naming that model (and the retry of either
    must find its job even if another model has been activated meanwhile)."""
    from ocr_app.registry import active_version

    book = {"cover.png": job_pages.png(pages[0])}
    assert _post(api, book, "which-model").status_code == 202
    answer = _post(api, book, "which-model", model=active_version().name)
    assert answer.status_code == 409, answer.content


def test_service_callers_get_the_same_normalisation(user, pages):
    """``submit_job`` called directly (not through the API, which already reads an empty field as none):
    ``model=""`` is ``model=None``, and formats as a string or a list of any spelling are one set."""
    from ocr_app.jobs import services

    files = [("p.png", job_pages.png(pages[0]))]
    job, created = services.submit_job(user, files, model="", formats="alto,txt", idempotency_key="direct")
    assert created
    assert services.submit_job(user, files, model=None, formats=["TXT", "alto"], idempotency_key="direct") == (
        job, False)
    assert services.request_fingerprint(files, "", "", "alto,txt") == services.request_fingerprint(
        files, "p.png", None, ["txt", " alto"])
    for other in [dict(name="Other"), dict(model="arabic-crnn-v2-int8"), dict(formats="txt"),
                  dict(files=[("q.png", files[0][1])]), dict(files=files * 2)]:
        asked = {"files": files, "name": "", "model": None, "formats": "alto,txt", **other}
        assert services.request_fingerprint(**asked) != job.request_fingerprint, other


def test_a_retry_with_formats_that_name_none_is_a_400_not_a_match_or_a_conflict(api, pages):
    """The request is validated before its key is looked up: a bad one is refused as bad, whatever its key."""
    book = {"cover.png": job_pages.png(pages[0])}
    assert _post(api, book, "then-broken").status_code == 202
    for formats in ["", ",", "pdf"]:
        answer = _post(api, book, "then-broken", formats=formats)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "unknown_format", answer.content
    assert Job.objects.count() == 1


def test_a_job_submitted_before_fingerprints_were_normalised_still_answers_its_retry(api, user, pages, settings):
    """Rows stored by the earlier code hold the SHA-256 of the request as sent (the API's values: formats as
    the list of fields, the name as sent, no model as None). Those cannot be recomputed in normalised form, so
    the look-up accepts either fingerprint: a retry sent as the first request was (what a client's retry is)
    still answers its job; one that asks for the same job another way is a 409 for such a row, as it was
    before the upgrade."""
    from ocr_app.jobs import services

    book = {"cover.png": job_pages.png(pages[0])}
    files = list(book.items())
    old = services.create_job(user, files, name="Diwan", formats=["txt,alto"], idempotency_key="pre-upgrade",
                              fingerprint=services.legacy_request_fingerprint(files, "Diwan", None, ["txt,alto"]))
    assert old.request_fingerprint != services.request_fingerprint(files, "Diwan", None, ["txt,alto"])
    stored = sorted(media_files(settings))
    again = _post(api, book, "pre-upgrade", name="Diwan", formats="txt,alto")
    assert again.status_code == 200 and again.json()["id"] == old.pk, again.content
    reordered = _post(api, book, "pre-upgrade", name="Diwan", formats="alto,txt")
    assert reordered.status_code == 409, reordered.content
    assert _post(api, book, "pre-upgrade", name="Other", formats="txt,alto").status_code == 409
    assert Job.objects.count() == 1 and sorted(media_files(settings)) == stored


def test_the_legacy_fingerprint_is_the_one_the_earlier_code_stored():
    """Pinned to values computed by the code that stored them (before normalisation), so that a change to
    ``legacy_request_fingerprint`` cannot drift from what pre-upgrade rows hold."""
    from ocr_app.jobs import services

    assert services.legacy_request_fingerprint([("p1.png", b"page one"), ("p2.png", b"page two")], "Diwan", None,
                                               ["txt,alto"]) == \
        "70b34004ac906dc46834f23b79d543597bc659db4f95c8fd488b5dbe1556fafb"
    assert services.legacy_request_fingerprint([("p1.png", b"page one")], "", "arabic-crnn-v2", "txt") == \
        "2697db56db83a059d631a4b9733ef9a8dfbc73a543ef7df37375fa21321e38f5"


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "tab\tin-it", "nul\x00", "bell\x07", " ", " padded ",
                                 "sent-twice,sent-twice", "in side"])
def test_a_malformed_key_is_a_400_and_stores_nothing(api, pages, settings, key):
    answer = _post(api, {"p.png": job_pages.png(pages[0])}, key)
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "invalid_idempotency_key" and "1 to 255 printable ASCII" in error["message"]
    assert not Job.objects.exists() and media_files(settings) == []


@pytest.mark.parametrize("key", ["a", "x" * 255, "~!#$%&'*+-.^_`|{}[]<>=\"/\\:;?@()0"])
def test_any_printable_ascii_key_of_1_to_255_characters_without_space_or_comma_is_taken(api, pages, key):
    assert _post(api, {"p.png": job_pages.png(pages[0])}, key).status_code == 202
    assert _post(api, {"p.png": job_pages.png(pages[0])}, key).status_code == 200
    assert Job.objects.get().idempotency_key == key


def test_another_users_key_is_their_own(api, other_api, pages, user, other_user):
    book = {"p.png": job_pages.png(pages[0])}
    mine = _post(api, book, "shared-key")
    theirs = _post(other_api, book, "shared-key")
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    # a different request under the same key is no conflict across users either
    assert _post(other_api, {"q.png": job_pages.png(pages[1])}, "key-of-mine").status_code == 202
    assert _post(api, book, "key-of-mine").status_code == 202
    assert {(job.user_id, job.idempotency_key) for job in Job.objects.all()} == {
        (user.pk, "shared-key"), (other_user.pk, "shared-key"), (user.pk, "key-of-mine"),
        (other_user.pk, "key-of-mine")}


def test_the_database_holds_one_key_per_user(user):
    """A unique constraint, not only the service's check: two writers that both checked first still make one."""
    from django.db import IntegrityError, transaction

    from ocr_app.registry import active_version

    make = dict(user=user, name="b", model_version=active_version(), idempotency_key="k1", request_fingerprint="f")
    Job.objects.create(**make)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(**make)
    Job.objects.create(**{**make, "idempotency_key": ""})
    Job.objects.create(**{**make, "idempotency_key": ""})   # no key: any number of jobs
    assert Job.objects.count() == 3


def test_the_api_schema_documents_the_idempotency_key(api):
    post = api.get("/api/schema/?format=json").json()["paths"]["/api/v1/jobs/"]["post"]
    header = [p for p in post["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"]
    assert header and not header[0].get("required") and "retry" in header[0]["description"]
    assert {"200", "202", "400", "409"} <= set(post["responses"])


def _blocked_inserts(cursor) -> int:
    """Sessions waiting for a lock on the jobs table (their INSERT waits out the test's LOCK TABLE)."""
    cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'ocr_app_job'::regclass")
    return cursor.fetchone()[0]


def _waits_in(thread: threading.Thread, function: str) -> bool:
    import sys

    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_request", [True, False])
def test_two_posts_at_once_with_one_key_end_with_one_job(user, pages, settings, caplog, same_request):
    """Both requests look the key up before either has stored its job, so both go on to create one: the
    database's unique key lets one commit, and the other answers its job (or 409 when it was another
    request), its transaction rolled back before it stored a file. The test holds the jobs table locked
    until both are past their look-up, so the race is the same on every run."""
    from django.db import connection, connections, transaction
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time: the race needs PostgreSQL")
    token = Token.objects.get_or_create(user=user)[0].key
    books = [{"p.png": job_pages.png(pages[0])},
             {"p.png": job_pages.png(pages[0] if same_request else pages[1])}]
    answers: list = [None, None]

    def post(n: int) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
            answers[n] = _post(client, books[n], "the-one-key")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(n,)) for n in range(2)]
    with caplog.at_level("INFO", logger="ocr_app.jobs"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("LOCK TABLE ocr_app_job IN SHARE ROW EXCLUSIVE MODE")   # reads go on, inserts wait
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 60
            # the same files: one request waits for the other's claim on their content, past its look-up;
            # other files: both wait at their INSERT
            while not (_blocked_inserts(cursor) == 2 or (
                    same_request and _blocked_inserts(cursor) == 1
                    and any(_waits_in(thread, "claimed") for thread in threads))):
                assert time.monotonic() < deadline, "the requests did not both get past their look-up"
                time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=120)
    statuses = sorted(answer.status_code for answer in answers)
    job = Job.objects.get()
    winner = next(answer for answer in answers if answer.status_code == 202)
    assert winner.json()["id"] == job.pk
    if same_request:
        assert statuses == [200, 202]
        assert [answer.json()["id"] for answer in answers] == [job.pk, job.pk]
        assert "a concurrent request with its Idempotency-Key created it first" in caplog.text
    else:
        assert statuses == [202, 409]
        loser = next(answer for answer in answers if answer.status_code == 409)
        assert loser.json()["error"]["code"] == "idempotency_key_reused"
    # only the winner's page file: the loser stored none, or removed it
    assert Page.objects.count() == 1
    assert [p.relative_to(settings.MEDIA_ROOT).as_posix() for p in media_files(settings)] == [
        PageFile.objects.get().file.name]
