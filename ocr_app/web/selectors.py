"""Which stored pages a person may see on the web pages."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from ..jobs.models import Page


def pages_shown_to(user, reviewer: bool) -> QuerySet[Page]:
    """Read pages with a stored file: a reviewer's are all of them, anyone else's their own (the pages of
    their jobs, and the pages they sent to the pages API)."""
    pages = Page.objects.filter(status=Page.Status.DONE, file__isnull=False).select_related("file")
    return pages if reviewer else pages.filter(Q(job__user=user) | Q(job__isnull=True, user=user))
