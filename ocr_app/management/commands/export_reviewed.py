"""python manage.py export_reviewed OUT_DIR [--since DATE] [--status verified,corrected] [--replace]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocr_app.exports import export_reviewed
from ocr_app.selectors import parse_when


class Command(BaseCommand):
    help = ("Write reviewed recognitions as a line dataset (NAME.png + NAME.gt.txt, the corrected text where "
            "there is one) with manifest.json (provenance). Feed OUT_DIR to training.preprocess.")

    def add_arguments(self, parser):
        parser.add_argument("out_dir")
        parser.add_argument("--since", help="only recognitions reviewed at or after this ISO date / date-time")
        parser.add_argument("--status", default="verified,corrected", help="comma-separated review statuses")
        parser.add_argument("--replace", action="store_true",
                            help="replace OUT_DIR whole if it is not empty (default: refuse)")

    def handle(self, *args, **options):
        since = None
        if options["since"]:
            since = parse_when(options["since"])
            if since is None:
                raise CommandError(f"--since must be an ISO date or date-time, got {options['since']!r}")
        try:
            manifest = export_reviewed(options["out_dir"], since=since, statuses=options["status"].split(","),
                                       replace=options["replace"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"exported {manifest['lines']} lines to {options['out_dir']} "
                          f"({', '.join(f'{k}: {v}' for k, v in manifest['by_status'].items()) or 'none'})")
