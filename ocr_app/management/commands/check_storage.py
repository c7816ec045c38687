"""python manage.py check_storage [--fix] [--min-age SECONDS]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocr_app.pages.services import forget_pages_of_dead_requests
from ocr_app.storage_check import check_storage, remove_orphans


class Command(BaseCommand):
    help = ("Compare stored line images and page files on disk with the database: files without a row (left by a worker "
            "killed mid-upload), rows without a file, and pages whose request's worker died while reading them "
            "(their rows hold their page files). --fix deletes the orphan files and forgets those pages as a "
            "restart does. Exits 1 while something is wrong (after --fix: while a row lacks its file).")

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="delete files that no row refers to, and the pages "
                                                               "(and their files) of requests whose worker died")
        parser.add_argument("--min-age", type=float, default=300.0,
                            help="only files older than this many seconds count as orphans (an upload in "
                                 "progress writes its file just before it commits its row); default 300")

    def handle(self, *args, **options):
        report = check_storage(options["min_age"])
        self.stdout.write(f"{report.files} files, {report.rows} stored images and page files; {len(report.orphans)} orphan files, "
                          f"{len(report.missing)} rows without a file"
                          + (f", {len(report.young_orphans)} recent files not judged" if report.young_orphans else "")
                          + (f", {len(report.dead_request_pages)} pages of requests whose worker died"
                             if report.dead_request_pages else ""))
        for name in report.orphans:
            self.stdout.write(f"orphan: {name}")
        for name in report.missing:
            self.stdout.write(f"missing: {name}")
        for page in report.dead_request_pages:
            self.stdout.write(f"dead request: {page}")
        if options["fix"] and report.dead_request_pages:
            self.stdout.write(f"forgot {forget_pages_of_dead_requests()} pages of requests whose worker died")
        if options["fix"] and report.orphans:
            self.stdout.write(f"removed {remove_orphans(report)} orphan files")
        if report.missing or ((report.orphans or report.dead_request_pages) and not options["fix"]):
            raise CommandError("storage and database disagree", returncode=1)
