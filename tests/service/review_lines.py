"""Recognised lines for the review tests: rendered with Debian fonts, read by the real model."""

from __future__ import annotations

from ocr_app import services
from ocr_app.models import Recognition
from tests.rendering import png_bytes, render_line

# Different faces and sizes give the model easy and hard lines, so the confidences differ.
LINES = [("قال أبو محمد", "Amiri-Regular", 40), ("ثم دخلت سنة خمس", "Scheherazade-Regular", 30),
         ("وفيها توفي الشيخ", "Amiri-Regular", 24), ("سنة 45 للهجرة", "Scheherazade-Regular", 44),
         ("حدثنا عبد الله بن", "Amiri-Regular", 34), ("فلما رأى ذلك", "Amiri-Regular", 28)]


def recognise_lines(user, count: int = 5) -> list[Recognition]:
    uploads = [services.decode_upload(f"line{i}.png", png_bytes(render_line(text, face, size)))
               for i, (text, face, size) in enumerate(LINES[:count])]
    return services.recognize_uploads(user, uploads)
