"""Image files with crafted headers, built byte by byte: each starts as a format we read and lies after that.

Pillow's plugins parse such headers with struct, seeks and arithmetic and raise whatever trips (OSError,
SyntaxError, TypeError, EOFError, struct.error, ...), some at open and some only when a frame is sought.
Every loader (a line, a page, a job's file, the core directly) must answer each with the same ``ImageError``
code, the one beside it in ``CRAFTED``.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image


def png_with_its_header_chunk_cut() -> bytes:
    """The PNG signature, then an IHDR chunk that says 13 bytes and stops after 3 of them."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">I", 100)[:3]


def tiff_whose_first_directory_lies_past_the_end() -> bytes:
    return b"II*\x00" + struct.pack("<I", 1_000_000) + bytes(8)


def gif_with_its_logical_screen_cut() -> bytes:
    """``GIF89a`` and the screen's width: its height, flags, background and aspect bytes are missing."""
    return b"GIF89a" + struct.pack("<H", 100)


def gif_whose_logical_screen_promises_a_missing_colour_table() -> bytes:
    """A 10x10 screen whose flags say a 256-colour global table follows; the file ends instead."""
    return b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0xF7, 0, 0)


def bmp_claiming_100000_by_100000() -> bytes:
    """A BMP header for 10^10 pixels over 100 bytes of data: refused on its header, never allocated."""
    info = struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 100, 0, 0, 14 + len(info)) + info + bytes(100)


def jpeg_start_then_garbage() -> bytes:
    """A JPEG's start-of-image marker, then bytes that are no marker segments (0xFF first, so that Pillow's JPEG
    parser takes the file and fails inside it)."""
    rng = random.Random(7)
    return b"\xff\xd8\xff" + bytes(rng.randrange(256) for _ in range(600))


def tiff_whose_second_frame_directory_is_cut() -> bytes:
    """A two-frame TIFF cut in half: its first frame opens, the second frame's directory is gone."""
    frame = Image.new("L", (200, 200), 255)
    out = io.BytesIO()
    frame.save(out, "TIFF", save_all=True, append_images=[frame])
    data = out.getvalue()
    return data[:len(data) // 2]


def png_cut_in_its_pixels() -> bytes:
    """A whole header and the first part of the compressed pixels: fails only when decoded."""
    rng = random.Random(3)
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(300)) for _ in range(60))
    ihdr = struct.pack(">IIBBBBB", 300, 60, 8, 0, 0, 0, 0)
    data = zlib.compress(rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data[:len(data) // 3])


# file name -> (its bytes, the ImageError code every loader answers it with)
CRAFTED = {
    "ihdr-cut.png": (png_with_its_header_chunk_cut(), "corrupt_image"),
    "ifd-past-end.tif": (tiff_whose_first_directory_lies_past_the_end(), "corrupt_image"),
    "screen-cut.gif": (gif_with_its_logical_screen_cut(), "corrupt_image"),
    "no-colour-table.gif": (gif_whose_logical_screen_promises_a_missing_colour_table(), "corrupt_image"),
    "huge.bmp": (bmp_claiming_100000_by_100000(), "image_too_large"),
    "garbage.jpg": (jpeg_start_then_garbage(), "corrupt_image"),
    "second-frame-cut.tif": (tiff_whose_second_frame_directory_is_cut(), "corrupt_image"),
    "pixels-cut.png": (png_cut_in_its_pixels(), "corrupt_image"),
}
