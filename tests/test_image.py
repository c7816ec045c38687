import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from recognition.image import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    LineLimits,
    PreprocessConfig,
    ink_map,
    load_grey,
    preprocess,
)
from recognition.image_file import open_image, picture_count
from tests.crafted_images import CRAFTED
from tests.rendering import png_bytes, render_line

LINE = render_line("قال أبو محمد سنة 123")


def encode(image: Image.Image, fmt="PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def reference():
    return preprocess(load_grey(png_bytes(LINE)))


def test_preprocess_gives_model_height_float_ink_and_mirrors():
    line = reference()
    assert line.shape[0] == 48 and line.dtype == np.float32
    assert 0.0 <= line.min() and line.max() <= 1.0
    assert line.mean() < 0.5  # paper is 0, ink is 1
    unmirrored = preprocess(load_grey(png_bytes(LINE)), PreprocessConfig(mirror=False))
    np.testing.assert_array_equal(line, unmirrored[:, ::-1])


def test_aspect_ratio_is_kept():
    line = reference()
    h, w = LINE.shape
    # margins are trimmed, so compare with the ink's bounding box
    ink_rows = np.flatnonzero((LINE < 128).any(axis=1))
    ink_cols = np.flatnonzero((LINE < 128).any(axis=0))
    ink_aspect = (ink_cols[-1] - ink_cols[0]) / (ink_rows[-1] - ink_rows[0])
    assert line.shape[1] / line.shape[0] == pytest.approx(ink_aspect, rel=0.25)


@pytest.mark.parametrize("size, is_a_line", [((1, 1), False), ((3, 200), True), ((5000, 4), False),
                                             ((17, 9), True), ((3000, 100), False)])
def test_odd_sizes_give_a_line_or_a_clear_refusal(size, is_a_line):
    w, h = size
    grey = np.full((h, w), 255, np.uint8)
    grey[h // 2, :] = 0
    if is_a_line:
        out = preprocess(load_grey(png_bytes(grey)))
        assert out.shape[0] == 48 and 1 <= out.shape[1] <= LineLimits().max_width
    else:
        with pytest.raises(ImageError) as refused:
            preprocess(load_grey(png_bytes(grey)))
        assert refused.value.code == "not_a_line_image"


def test_sixteen_bit_grey_matches_eight_bit():
    sixteen = Image.fromarray(LINE.astype(np.uint16) * 257)
    assert sixteen.mode in ("I;16", "I")
    np.testing.assert_allclose(preprocess(load_grey(encode(sixteen))), reference(), atol=0.02)


def test_rgba_is_composited_on_white_paper():
    rgba = np.zeros(LINE.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - LINE  # ink opaque black, paper fully transparent
    out = preprocess(load_grey(encode(Image.fromarray(rgba, "RGBA"))))
    np.testing.assert_allclose(out, reference(), atol=0.05)


def test_palette_and_cmyk_and_rgb_images():
    base = Image.fromarray(LINE).convert("RGB")
    for image in (base, base.convert("P"), base.convert("CMYK")):
        fmt = "TIFF" if image.mode == "CMYK" else "PNG"
        out = preprocess(load_grey(encode(image, fmt)))
        # a 256-colour web palette has few greys: anti-aliased edges shift a little
        assert out.shape == reference().shape
        assert np.abs(out - reference()).mean() < 0.01
        assert np.abs(out - reference()).max() < 0.15


def test_jpeg_cmyk():
    out = preprocess(load_grey(encode(Image.fromarray(LINE).convert("CMYK"), "JPEG", quality=95)))
    assert out.shape == reference().shape


def test_exif_rotation_is_applied():
    rotated = Image.fromarray(LINE).rotate(90, expand=True)  # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 CW to display"
    grey = load_grey(encode(rotated, "JPEG", exif=exif, quality=95))
    assert grey.shape == LINE.shape


def test_white_text_on_black_is_inverted():
    np.testing.assert_allclose(preprocess(255 - LINE), reference(), atol=0.02)


@pytest.mark.parametrize("data, code", [
    (b"", "empty_file"),
    (b"this is not an image at all", "not_an_image"),
    (png_bytes(LINE)[:200], "corrupt_image"),
])
def test_bad_inputs_raise_clear_errors(data, code):
    with pytest.raises(ImageError) as info:
        load_grey(data)
    assert info.value.code == code


def test_multi_frame_images_are_refused():
    frames = [Image.fromarray(LINE), Image.fromarray(255 - LINE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError) as info:
        load_grey(buffer.getvalue())
    assert info.value.code == "multi_frame_image"


def test_a_multi_frame_line_is_refused_reading_only_its_second_frame():
    """Counting every frame to refuse a line let a 10 MB TIFF of tens of thousands of tiny frames hold a worker for
    seconds: only the second frame's directory is read. Here the third one points past the end of the file, which
    counting would have tripped on (corrupt_image); the line is refused for its second frame alone."""
    import struct

    frames = [Image.fromarray(LINE)] * 3
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"II*\x00"
    first = struct.unpack_from("<I", data, 4)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * struct.unpack_from("<H", data, first)[0])[0]
    struct.pack_into("<I", data, second + 2 + 12 * struct.unpack_from("<H", data, second)[0], len(data) + 4096)
    with open_image(bytes(data)) as image, pytest.raises(ImageError) as counted:
        picture_count(image)
    assert counted.value.code == "corrupt_image"
    with pytest.raises(ImageError) as info:
        load_grey(bytes(data))
    assert info.value.code == "multi_frame_image" and "more than one frame" in info.value.message


def test_huge_dimensions_are_refused_before_decoding():
    data = encode(Image.new("L", (5000, 5000), 255))
    with pytest.raises(ImageError) as info:
        load_grey(data, max_pixels=10_000_000)
    assert info.value.code == "image_too_large"
    assert "25000000" in info.value.message


def test_paths_work_like_bytes(tmp_path):
    path = tmp_path / "line.png"
    path.write_bytes(png_bytes(LINE))
    np.testing.assert_array_equal(load_grey(path), LINE)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError):
        load_grey(tmp_path / "empty.png")


def _eight_bit_lines():
    rng = np.random.default_rng(3)
    rendered = render_line("قال أبو محمد: «الكتاب» ٣٤", face="Amiri-Regular")
    noisy = [rng.integers(0, 256, (int(rng.integers(1, 80)), int(rng.integers(1, 700))), dtype=np.uint8)
             for _ in range(60)]
    faded = (rendered.astype(np.int32) // 3 + 150).astype(np.uint8)
    return [rendered, 255 - rendered, faded, np.full((3, 5), 7, np.uint8), np.zeros((1, 1), np.uint8),
            np.array([[0, 255]], np.uint8), *noisy]


@pytest.mark.parametrize("index", range(66))
def test_eight_bit_ink_map_equals_sorting_the_pixels_bit_for_bit(index):
    """The histogram path (uint8) must give exactly what the sorting path gives, or a line read
    through another route (stored arrays, float input) would read differently."""
    grey = _eight_bit_lines()[index]
    fast, sorted_path = ink_map(grey), ink_map(grey.astype(np.float32))
    assert fast.dtype == sorted_path.dtype == np.float32
    np.testing.assert_array_equal(fast, sorted_path)


@pytest.mark.parametrize("index", range(66))
def test_eight_bit_lines_are_trimmed_on_their_grey_levels_bit_for_bit(index):
    """An 8-bit line finds its margins on grey extremes and maps only the pixels it keeps: the same model
    input, in every bit, as mapping the whole line to float ink and trimming that (the float path)."""
    grey = _eight_bit_lines()[index]
    anything = LineLimits(max_width=10**7, min_height=1)
    fast = preprocess(grey, limits=anything)
    reference_path = preprocess(grey.astype(np.float32), limits=anything)
    assert fast.dtype == reference_path.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, reference_path)


def test_ink_touching_the_edges_and_a_blank_line_trim_as_the_float_path():
    speck = np.full((40, 300), 255, np.uint8)
    speck[0, 299] = speck[39, 0] = 0  # ink in opposite corners: nothing to trim
    blank = np.full((40, 300), 250, np.uint8)  # no ink anywhere: kept whole
    inverted = 255 - LINE  # light ink on dark paper
    for grey in (speck, blank, inverted, LINE[:, ::3], np.asfortranarray(LINE)):
        np.testing.assert_array_equal(preprocess(grey), preprocess(grey.astype(np.float32)))


def _every_core_loader(data: bytes) -> dict:
    """What each core loader of an image file answers: the ImageError code, or 'read'."""
    from recognition.page_loader import count_pages, iter_pages
    from recognition.page_select import load_page

    loaders = {"open_image": lambda: open_image(data, max_pixels=DEFAULT_MAX_PIXELS).close(),
               "load_grey": lambda: load_grey(data), "iter_pages": lambda: list(iter_pages(data)),
               "count_pages": lambda: count_pages(data), "load_page": lambda: load_page(data, 1),
               "load_grey from a file": lambda: load_grey(io.BytesIO(data))}
    answers = {}
    for name, load in loaders.items():
        try:
            load()
            answers[name] = "read"
        except ImageError as exc:
            answers[name] = exc.code
    return answers


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_header_gets_one_clear_error_from_every_core_loader(name):
    """Pillow raises a zoo of exceptions on crafted headers; every loader answers each file alike, and never
    with anything but an ImageError (a crash here is a 500 in the API)."""
    data, code = CRAFTED[name]
    answers = _every_core_loader(data)
    if name in ("pixels-cut.png", "second-frame-cut.tif"):   # read only as far as the header: nothing wrong yet
        assert answers.pop("open_image") == "read"
    if name == "pixels-cut.png":                              # counted without decoding a pixel
        assert answers.pop("count_pages") == "read"
    assert set(answers.values()) == {code}, answers


def test_a_file_that_starts_as_no_format_we_read_is_not_an_image_and_one_that_does_is_corrupt():
    with pytest.raises(ImageError) as unknown:
        open_image(b"plain text, not a picture")
    assert unknown.value.code == "not_an_image"
    with pytest.raises(ImageError) as damaged:
        open_image(CRAFTED["ifd-past-end.tif"][0])
    assert damaged.value.code == "corrupt_image" and "TIFF" in damaged.value.message


def test_too_many_pixels_is_worded_alike_from_the_header_and_from_pillows_bomb_check():
    with pytest.raises(ImageError) as counted:
        open_image(encode(Image.new("L", (5000, 5000), 255)), max_pixels=10_000_000)
    assert counted.value.message == "the image is 5000x5000 = 25000000 pixels; the limit is 10000000"
    with pytest.raises(ImageError) as bomb:
        open_image(CRAFTED["huge.bmp"][0], max_pixels=10_000_000)
    assert bomb.value.code == "image_too_large"
    assert bomb.value.message == f"the image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels; the limit is 10000000"


def test_a_caller_s_file_is_left_open():
    stream = io.BytesIO(png_bytes(LINE))
    load_grey(stream)
    broken = io.BytesIO(CRAFTED["pixels-cut.png"][0])
    with pytest.raises(ImageError):
        load_grey(broken)
    assert not stream.closed and not broken.closed


def _with_exif_header_broken(fmt: str, orientation: int = 6) -> bytes:
    """LINE saved as ``fmt`` with EXIF (orientation, camera), its TIFF header then broken ('MM\\0*' -> 'MM\\0\\xc4')."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "phone"
    out = io.BytesIO()
    Image.fromarray(LINE).save(out, fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
    data = out.getvalue()
    at = data.index(b"MM\x00*")
    return data[:at + 3] + b"\xc4" + data[at + 4:]


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])   # no PNG: its chunk CRC would fail first
def test_exif_that_cannot_be_parsed_is_taken_as_absent_by_every_core_loader(fmt):
    """Pillow's JPEG reader ignores EXIF it cannot parse when it opens the file, and browsers show such an image
    as stored; but ImageOps.exif_transpose parses it again and raised SyntaxError out of load_grey (a WebP line)
    and the page loaders (a JPEG page): a 500 upstream for a file every viewer shows."""
    data = _with_exif_header_broken(fmt)
    assert set(_every_core_loader(data).values()) == {"read"}, fmt
    expected = load_grey(encode(Image.fromarray(LINE), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    np.testing.assert_array_equal(load_grey(data), expected)   # read as stored, not turned
    from recognition.page_loader import iter_pages
    np.testing.assert_array_equal(next(iter_pages(data)).grey, expected)


def test_an_exif_orientation_is_applied_by_the_line_and_page_loaders_alike():
    from recognition.page_loader import iter_pages
    from recognition.page_select import load_page

    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        Image.fromarray(LINE).save(out, "PNG", exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(out.getvalue()))).convert("L"))
        for grey in (load_grey(out.getvalue()), next(iter_pages(out.getvalue())).grey,
                     load_page(out.getvalue(), 1).grey):
            np.testing.assert_array_equal(grey, expected, err_msg=str(orientation))
