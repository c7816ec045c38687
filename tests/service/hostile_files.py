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


def deflated(inflated: int, byte: bytes = b" ") -> bytes:
    """``inflated`` bytes of ``byte``, zlib-deflated a MiB at a time (the test process never holds them)."""
    compressor = zlib.compressobj(9)
    chunk = byte * (1 << 20)
    return b"".join(compressor.compress(chunk[:min(len(chunk), inflated - done)])
                    for done in range(0, inflated, len(chunk))) + compressor.flush()


def pdf_of(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of the numbered objects (1 is the catalog) with a correct cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj" % number + body + b"endobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer<</Size %d/Root 1 0 R%s>>\nstartxref\n%d\n%%%%EOF" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def _stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<<%s/Length %d>>stream\n" % (dictionary, len(data)) + data + b"\nendstream"


_CATALOG = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>"]


def flate_bomb_pdf(inflated: int, streams: int = 1) -> bytes:
    """A one-page 200 x 200 pt PDF whose content is ``streams`` streams of ``inflated`` bytes of spaces
    each, deflated (the same stream object repeated)."""
    page = (b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents["
            + b" ".join(b"%d 0 R" % (4 + k) for k in range(streams)) + b"]>>")
    return pdf_of(_CATALOG + [page] + [_stream(b"/Filter/FlateDecode", deflated(inflated))] * streams)


def nested_flate_bomb_pdf(inflated: int) -> bytes:
    """A one-page PDF (about 1 KB per 256 MiB) whose content stream is ``inflated`` bytes of spaces deflated
    twice (``/Filter[/FlateDecode/FlateDecode]``): inflating one layer, as a check before pdfium can, finds
    only the inner deflate's few hundred bytes; pdfium inflates both when it loads the page."""
    page = b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R>>"
    twice = zlib.compress(deflated(inflated), 9)
    return pdf_of(_CATALOG + [page, _stream(b"/Filter[/FlateDecode/FlateDecode]", twice)])


def image_bomb_pdf(side: int, grey: bytes = b"\x00") -> bytes:
    """A one-page 200 x 200 pt PDF that draws a ``side`` x ``side`` image of one ``grey`` level (black unless
    told), its bytes deflated twice: the page loads and counts cheaply (images are decoded only when drawn),
    rendering decodes ``side`` squared bytes."""
    page = (b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R"
            b"/Resources<</XObject<</Im0 5 0 R>>>>>>")
    image = zlib.compress(deflated(side * side, grey), 9)
    return pdf_of(_CATALOG + [page, _stream(b"", b"q 200 0 0 200 0 0 cm /Im0 Do Q"),
                              _stream(b"/Type/XObject/Subtype/Image/Width %d/Height %d/ColorSpace/DeviceGray"
                                      b"/BitsPerComponent 8/Filter[/FlateDecode/FlateDecode]" % (side, side),
                                      image)])


# One LZW cycle for a run of one byte (PDF's LZWDecode, 9-bit codes, EarlyChange 1): Clear, the byte, then codes
# 258..495, each a new table entry one byte longer than the last (the decoder's "KwKwK" case). 240 codes of
# 9 bits are 270 whole bytes, so cycles repeat byte for byte; each inflates to 28 680 bytes (codes stay under
# 511, where the code width would grow).
LZW_CYCLE_CODES = 240
LZW_CYCLE_BYTES = 1 + sum(k - 256 for k in range(258, 258 + LZW_CYCLE_CODES - 2))


def _lzw_codes_bytes(codes: list[int]) -> bytes:
    bits = "".join(format(code, "09b") for code in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def lzw_run(byte: int, cycles: int) -> bytes:
    """An LZWDecode stream of ``cycles * LZW_CYCLE_BYTES`` copies of ``byte``, ~106 times smaller."""
    cycle = _lzw_codes_bytes([256, byte] + list(range(258, 258 + LZW_CYCLE_CODES - 2)))
    return cycle * cycles + _lzw_codes_bytes([257])


def lzw_bomb_pdf(inflated: int) -> bytes:
    """A one-page PDF whose content stream is about ``inflated`` bytes of spaces, LZW-compressed (a stream the
    zlib check before pdfium cannot measure)."""
    page = b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R>>"
    return pdf_of(_CATALOG + [page, _stream(b"/Filter/LZWDecode", lzw_run(0x20, -(-inflated // LZW_CYCLE_BYTES)))])


def lzw_image_pdf(cycles: int, grey: int = 0x80) -> bytes:
    """A page drawing a 1195 x 24*``cycles`` image of one ``grey`` level, LZW-compressed: proves the encoding."""
    width = 1195   # LZW_CYCLE_BYTES = 28 680 = 1195 x 24
    page = (b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R"
            b"/Resources<</XObject<</Im0 5 0 R>>>>>>")
    return pdf_of(_CATALOG + [page, _stream(b"", b"q 200 0 0 200 0 0 cm /Im0 Do Q"),
                              _stream(b"/Type/XObject/Subtype/Image/Width %d/Height %d/ColorSpace/DeviceGray"
                                      b"/BitsPerComponent 8/Filter/LZWDecode" % (width, 24 * cycles),
                                      lzw_run(grey, cycles))])


_PASSWORD_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")


def _rc4(key: bytes, data: bytes) -> bytes:
    state, j = list(range(256)), 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


def encrypted_pdf(user_password: bytes, owner_password: bytes = b"owner") -> bytes:
    """A one-page blank PDF encrypted with the standard security handler (RC4 40-bit, revision 2, PDF
    1.4 algorithms 3.2-3.4); with an empty ``user_password`` anyone may open it (permissions only)."""
    import hashlib

    file_id = b"0123456789abcdef"
    owner_entry = _rc4(hashlib.md5((owner_password + _PASSWORD_PAD)[:32]).digest()[:5],
                       (user_password + _PASSWORD_PAD)[:32])
    permissions = -4   # everything allowed
    key = hashlib.md5((user_password + _PASSWORD_PAD)[:32] + owner_entry
                      + permissions.to_bytes(4, "little", signed=True) + file_id).digest()[:5]
    user_entry = _rc4(key, _PASSWORD_PAD)
    encrypt = b"<</Filter/Standard/V 1/R 2/Length 40/P %d/O<%s>/U<%s>>>" % (
        permissions, owner_entry.hex().encode(), user_entry.hex().encode())
    page = b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>"
    return pdf_of(_CATALOG + [page, encrypt],
                  trailer=b"/Encrypt 4 0 R/ID[<%s><%s>]" % (file_id.hex().encode(), file_id.hex().encode()))


def painted_over_pdf(fills: int, pages: int = 1) -> bytes:
    """A PDF of ``pages`` 600 x 600 pt pages (about 1 KB in all) whose content fills a page-sized triangle ``fills``
    times: small in memory, dear in CPU time (each fill is a path pdfium rasterises anew: ~4 ms at 300 dpi on the
    team machine, so 10 000 fills are ~40 s a page)."""
    content = 3 + pages
    kids = b" ".join(b"%d 0 R" % (3 + k) for k in range(pages))
    page = b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 600 600]/Contents %d 0 R>>" % content
    return pdf_of([_CATALOG[0], b"<</Type/Pages/Kids[%s]/Count %d>>" % (kids, pages)] + [page] * pages
                  + [_stream(b"/Filter/FlateDecode", zlib.compress(b"0 0 m 600 0 l 300 600 l f\n" * fills, 9))])
