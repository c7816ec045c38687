"""python manage.py register_model FILE [--activate] [--force]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocr_app.registry import RegistryError, register_model


class Command(BaseCommand):
    help = ("Register an ONNX model file (its name, version, alphabet and metadata are read from the file). "
            "--activate makes it the model every worker uses within seconds; it is refused if the model "
            "is worse than the active one on the reference set (OCR_REFERENCE_SET), unless --force.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="the .onnx file")
        parser.add_argument("--activate", action="store_true", help="make it the active model")
        parser.add_argument("--force", action="store_true", help="activate even if the quality gate says no")
        parser.add_argument("--reference", help="reference line folder for the quality gate "
                                                "(default: the OCR_REFERENCE_SET setting)")

    def handle(self, *args, **options):
        try:
            register_model(options["file"], activate=options["activate"], force=options["force"],
                           reference_dir=options["reference"], report=self.stdout.write)
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
