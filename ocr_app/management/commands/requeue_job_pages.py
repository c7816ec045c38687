"""Send the open pages of unfinished jobs to the queue again (Celery mode).

For the one gap acks_late cannot cover: a web process that died between
committing a job and sending its messages. Safe to run any time: a page
delivered twice is stored once (``ocr_app.jobs.services.process_page``).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocr_app.jobs import dispatch, runner
from ocr_app.jobs.models import Job, Page


class Command(BaseCommand):
    help = "Queue the queued/running pages of unfinished jobs again (needs CELERY_BROKER_URL)."

    def add_arguments(self, parser):
        parser.add_argument("--job", type=int, action="append", help="only this job (repeatable)")

    def handle(self, *args, **options):
        if not dispatch.uses_broker():
            raise CommandError("CELERY_BROKER_URL is not set: without a broker the web process runs jobs itself")
        pages = Page.objects.filter(status__in=Page.OPEN, job__status__in=Job.UNFINISHED)
        if options["job"]:
            pages = pages.filter(job_id__in=options["job"])
        page_ids = list(pages.order_by("job_id", "index").values_list("pk", flat=True))
        dispatch.send_to_broker(page_ids)
        self.stdout.write(f"{len(page_ids)} page(s) queued again")
        # a job whose last page was stored by a worker that died before closing it has no page left to send
        closed = runner.close_jobs_left_open()
        if closed:
            self.stdout.write(f"{closed} job(s) whose pages were all finished closed")
