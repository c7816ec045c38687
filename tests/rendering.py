"""Test lines rendered with real Arabic fonts (Debian packages), never copied data."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image

from training.fonts import FontFace, find_book_fonts
from training.synth import render_text


@cache
def font(name: str = "Amiri-Regular") -> FontFace:
    faces = {f.name: f for f in find_book_fonts()}
    if name not in faces:
        raise RuntimeError(f"font {name} is not installed: run scripts/install-system-deps.sh")
    return faces[name]


def render_line(text: str, face: str = "Amiri-Regular", size: int = 40, pad: int = 8) -> np.ndarray:
    """A clean black-on-white grey line image of ``text`` (logical order)."""
    return render_text(text, font(face), size, pad=pad)


def png_bytes(array_or_image, **save_args) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, format=save_args.pop("format", "PNG"), **save_args)
    return buffer.getvalue()
