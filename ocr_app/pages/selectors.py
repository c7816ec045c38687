"""Read side of pages sent on their own: who sees which, and the answer's JSON."""

from __future__ import annotations

from django.db.models import QuerySet

from ..jobs.models import Page, PageLine


def pages_visible_to(user) -> QuerySet[Page]:
    """Pages sent to the pages API belong to their user; staff see all. A job's pages come with its job."""
    queryset = Page.objects.filter(job__isnull=True, status=Page.Status.DONE).select_related("file", "model_version")
    return queryset if user.is_staff else queryset.filter(user=user)


def page_document(page: Page) -> dict:
    """The page's JSON (regions -> lines), each line with the id of its stored recognition."""
    document = dict(page.outputs["json"])
    recognitions = dict(PageLine.objects.filter(page=page).values_list("line_id", "recognition_id"))
    document["regions"] = [
        {**region, "lines": [{**line, "recognition_id": recognitions.get(line["id"])} for line in region["lines"]]}
        for region in document["regions"]]
    return document
