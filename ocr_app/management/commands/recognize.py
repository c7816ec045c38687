"""python manage.py recognize PATH [PATH ...] [--jsonl] [--model FILE]: ``arabic-ocr lines`` with the active model."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recognition.cli import UsageError, expand, recognize_files


class Command(BaseCommand):
    help = ("Recognise line images locally (files or folders, recursively) with the active model "
            "or --model FILE, without the HTTP service, decoded as the service decodes (OCR_LANGUAGE_MODEL). "
            "Nothing is stored. Same as `arabic-ocr lines`.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="image files or folders")
        parser.add_argument("--jsonl", action="store_true",
                            help="one JSON object per image (file, text, confidence, characters, or error)")
        parser.add_argument("--model", help="an .onnx file (default: the active registered model, else the shipped one)")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = default)")

    def handle(self, *args, **options):
        from django.conf import settings

        from recognition.char_lm import LanguageModelError
        from recognition.page_cli import ModelFileError, open_model

        try:
            files = expand(options["paths"])
        except UsageError as exc:
            raise CommandError(str(exc)) from None
        try:  # decoded as the service decodes: with OCR_LANGUAGE_MODEL if it names one
            recognizer = open_model(self._model_path(options["model"]), options["threads"] or None,
                                    {"max_batch": options["batch_size"],
                                     "language_model": settings.OCR_LANGUAGE_MODEL or None})
        except LanguageModelError as exc:
            raise CommandError(f"OCR_LANGUAGE_MODEL: {exc}") from None
        except ModelFileError as exc:
            raise CommandError(str(exc)) from None
        as_text = None if options["jsonl"] else _as_text
        total, failures = recognize_files(recognizer, files, self.stdout, options["batch_size"], as_text)
        if failures:
            raise CommandError(f"{failures} of {total} files could not be read", returncode=1)

    def _model_path(self, explicit: str | None) -> Path:
        if explicit:
            path = Path(explicit)
            if not path.exists():
                raise CommandError(f"no such model file: {path}")
            return path
        from django.conf import settings
        from django.db.utils import DatabaseError

        try:
            from ocr_app.models import ModelVersion

            active = ModelVersion.objects.filter(is_active=True).first()
            if active is not None:
                return active.file_path
        except DatabaseError:  # no database yet: the shipped model will do
            pass
        return Path(settings.OCR_DEFAULT_MODEL)


def _as_text(record: dict) -> str:
    if "error" in record:
        return f"{record['file']}\tERROR {record['error']['code']}: {record['error']['message']}"
    return f"{record['file']}\t{record['text']}"
