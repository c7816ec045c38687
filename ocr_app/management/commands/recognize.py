"""python manage.py recognize PATH [PATH ...] [--jsonl] [--model FILE]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recognition.image import ImageError
from recognition.onnx_recognizer import OnnxRecognizer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            files.append(p)
        else:
            raise CommandError(f"no such file or folder: {p}")
    return files


class Command(BaseCommand):
    help = ("Recognise line images locally (files or folders, recursively) with the active model "
            "or --model FILE, without the HTTP service. Nothing is stored.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="image files or folders")
        parser.add_argument("--jsonl", action="store_true", help="one JSON object per image: file, text, confidence")
        parser.add_argument("--model", help="an .onnx file (default: the active registered model, else the shipped one)")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = default)")

    def handle(self, *args, **options):
        files = expand(options["paths"])
        recognizer = OnnxRecognizer(self._model_path(options["model"]), threads=options["threads"] or None)
        failures = 0
        from tqdm import tqdm

        starts = range(0, len(files), options["batch_size"])
        for start in tqdm(starts, desc="recognising", unit="batch", file=sys.stderr, disable=None):
            chunk = files[start: start + options["batch_size"]]
            lines, ok = [], []
            for f in chunk:
                try:
                    lines.append(recognizer.prepare(f))
                    ok.append(f)
                except ImageError as exc:
                    failures += 1
                    self._emit(options, {"file": str(f), "error": {"code": exc.code, "message": exc.message}})
            for f, result in zip(ok, recognizer.recognize_arrays(lines) if lines else []):
                self._emit(options, {"file": str(f), "text": result.text, "confidence": result.confidence})
        if failures:
            sys.stderr.write(f"{failures} of {len(files)} files could not be read\n")

    def _emit(self, options, record: dict) -> None:
        if options["jsonl"]:
            self.stdout.write(json.dumps(record, ensure_ascii=False))
        elif "error" in record:
            self.stderr.write(f"{record['file']}\tERROR {record['error']['message']}")
        else:
            self.stdout.write(f"{record['file']}\t{record['text']}")

    def _model_path(self, explicit: str | None) -> Path:
        if explicit:
            path = Path(explicit)
            if not path.exists():
                raise CommandError(f"no such model file: {path}")
            return path
        from django.conf import settings
        from django.db.utils import DatabaseError

        try:
            from ocr_app.engine import model_path
            from ocr_app.models import ModelVersion

            active = ModelVersion.objects.filter(is_active=True).first()
            if active is not None:
                return model_path(active)
        except DatabaseError:  # no database yet: the shipped model will do
            pass
        return Path(settings.OCR_DEFAULT_MODEL)
