"""Crafted hostile files, small to build: the attack is in their structure, not their size."""

from __future__ import annotations

import struct
import zlib


def many_frame_tiff(frames: int) -> bytes:
    """A little-endian TIFF of ``frames`` 1x1 white frames sharing one pixel byte: 106 bytes a frame.

    Pillow seeks a TIFF's frames in time quadratic in their number (each new directory is looked for in
    the list of those seen, to catch loops): 40 000 frames, 4 MB, take 13 s to count on the team machine.
    """
    tags = 8
    ifd_size = 2 + 12 * tags + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 9) + b"\xff")   # header, then the shared pixel at offset 8
    for i in range(frames):
        offset = len(out)
        nxt = offset + ifd_size if i + 1 < frames else 0
        entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                   (273, 4, 1, 8), (278, 3, 1, 1), (279, 4, 1, 1)]
        out += struct.pack("<H", tags)
        for tag, typ, count, value in entries:
            out += struct.pack("<HHII", tag, typ, count, value)
        out += struct.pack("<I", nxt)
    return bytes(out)


def lying_zip_bomb(inflated: int, declared: int = 1000, name: bytes = b"page.png") -> bytes:
    """A zip of one deflated member of ``inflated`` zero bytes whose headers declare ``declared`` bytes
    (built a MiB at a time: the test process never holds the inflated bytes)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    stream = b"".join(compressor.compress(zeros[:min(len(zeros), inflated - done)])
                      for done in range(0, inflated, len(zeros))) + compressor.flush()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(stream), declared, len(name), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(stream), declared,
                          len(name), 0, 0, 0, 0, 0, 0)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name),
                      len(local) + len(name) + len(stream), 0)
    return local + name + stream + central + name + end


def flate_bomb_pdf(inflated: int, streams: int = 1) -> bytes:
    """A one-page 200 x 200 pt PDF whose content is ``streams`` streams of ``inflated`` bytes of spaces
    each, deflated (built a MiB at a time; the same stream object repeated)."""
    compressor = zlib.compressobj(9)
    spaces = b" " * (1 << 20)
    stream = b"".join(compressor.compress(spaces[:min(len(spaces), inflated - done)])
                      for done in range(0, inflated, len(spaces))) + compressor.flush()
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents["
               + b" ".join(b"%d 0 R" % (4 + k) for k in range(streams)) + b"]>>"]
    objects += [b"<</Length %d/Filter/FlateDecode>>stream\n" % len(stream) + stream + b"\nendstream"] * streams
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj" % number + body + b"endobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF" % (len(objects) + 1, xref)
    return bytes(out)
