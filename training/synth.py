"""Render synthetic Arabic text lines that look like scanned book lines.

    python -m training.synth --lines 20000 --out data/synth \\
        --corpus ../shared/datasets/openiti-gs --exclude-corpus IbnQutayba

Writes ``NNNNNNN.png`` + ``NNNNNNN.gt.txt`` pairs (the same layout as the real
data, so ``training.preprocess`` reads both). Line ``i`` depends only on
``--seed`` and ``i``: reruns are deterministic, and an interrupted run resumes
by skipping lines already written.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from recognition.text import normalize_text

from .corpus import DEFAULT_CORPUS, TextCorpus
from .fonts import FontFace, find_book_fonts

log = logging.getLogger("training.synth")

HARAKAT = "\u064e\u064f\u0650\u064b\u064c\u064d\u0651\u0652"
ARABIC_INDIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"


class ShapingUnavailableError(RuntimeError):
    pass


def require_shaping() -> None:
    """Fail loudly rather than render unshaped, reversed, isolated letters.

    Pillow's wheel bundles libraqm but loads FriBiDi from the system at run
    time; without it Pillow silently falls back to basic layout.
    """
    if not features.check("raqm"):
        raise ShapingUnavailableError(
            "Pillow has no working libraqm (complex text layout): Arabic would render unshaped. "
            "Install the system FriBiDi and HarfBuzz libraries (Debian: apt-get install libfribidi0 libraqm0)."
        )


@dataclass(frozen=True)
class SynthConfig:
    min_font_px: int = 26
    max_font_px: int = 56
    vocalise_probability: float = 0.3   # draw harakat on the image (never in the label)
    neighbour_probability: float = 0.35  # bits of the lines above/below in the crop
    number_probability: float = 0.25     # splice a number, date or footnote mark in
    quote_probability: float = 0.35      # «quote» or (bracket) a span of words
    punctuation_probability: float = 0.3  # add a clause mark (، . : ؛ ؟ !)
    # Old Egyptian (Bulaq) type prints word-final yā' without dots (فى for في) while transcriptions
    # write ي: draw ى on that share of lines, the label keeps ي.
    dotless_final_ya_probability: float = 0.2
    # Amiri follows Bulaq type, stacked ligatures (مما, يجوز, لم, لح) included: draw that share in it.
    amiri_share: float = 0.25
    # Books print the eulogy after the Prophet's name as one glyph (U+FDFA) and transcriptions spell it out: on
    # that share of lines (in faces that have the glyph) insert it, the label spelling the phrase. 0 draws no
    # random number for it, so the lines of a seed stay those of earlier recipes.
    eulogy_ligature_probability: float = 0.0
    # Some printers set punctuation French-style, a space inside guillemets and before . ، : ؛ ؟ ! (the IbnQutayba
    # edition on 91-98% of its marks), and its transcription keeps those spaces; the four other books print and
    # transcribe them tight, so a model trained on them reads such gaps as nothing. On that share of lines set
    # the line's marks spaced, label too. 0 draws no random number for it (earlier recipes' lines unchanged).
    spaced_punctuation_probability: float = 0.0
    # Many editions print a hamza-seated alif bare (انخت, شاو, ارطى for أنخت, شأو, أرطى; the IbnQutayba edition
    # on many, not all, not even within one line) while transcriptions restore the hamza: on that share of
    # lines draw each أ and إ bare with probability HAMZA_OMISSION_PER_ALIF, the label keeps it. 0 draws no random
    # number for it (earlier recipes' lines unchanged).
    hamza_omission_probability: float = 0.0


EULOGY_LIGATURE = "\ufdfa"   # ﷺ, which normalize_text spells صلى الله عليه وسلم


def _font(face: FontFace, size: int) -> ImageFont.FreeTypeFont:
    return _cached_font(face.path, size)


_FONT_CACHE: dict = {}


def _cached_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.RAQM)
    return _FONT_CACHE[key]


def render_text(text: str, face: FontFace, size: int, pad: int = 0) -> np.ndarray:
    """Black-on-white grey rendering of a logical-order line, shaped by raqm."""
    font = _font(face, size)
    left, top, right, bottom = font.getbbox(text, direction="rtl", language="ar")
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    image = Image.new("L", (max(width, 1), max(height, 1)), 255)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=0,
                               direction="rtl", language="ar")
    return np.asarray(image)


def _vocalise(text: str, rng: np.random.Generator) -> str:
    out = []
    for ch in text:
        out.append(ch)
        if "\u0621" <= ch <= "\u064a" and rng.random() < 0.25:
            out.append(HARAKAT[rng.integers(len(HARAKAT))])
    return "".join(out)


# a yā' that ends a word: not followed by a letter of the word (harakat are added later, if at all)
_FINAL_YA = re.compile("\u064a(?![\u0620-\u064a\u066e-\u06d3])")


def dotless_final_ya(text: str) -> str:
    """The text as Bulaq type prints it: every word-final ي drawn as ى."""
    return _FINAL_YA.sub("\u0649", text)


HAMZA_SEATED_ALIFS = "\u0623\u0625"   # أ إ
HAMZA_OMISSION_PER_ALIF = 0.5


def without_some_hamzas(text: str, rng: np.random.Generator) -> str:
    """The text as a printer who drops hamzas prints it: each أ or إ bare (ا) with probability 1/2."""
    return "".join("\u0627" if ch in HAMZA_SEATED_ALIFS and rng.random() < HAMZA_OMISSION_PER_ALIF else ch
                   for ch in text)


def with_eulogy_ligature(text: str, rng: np.random.Generator) -> str:
    """The text with the eulogy glyph after a random word, comma-separated as books set it."""
    words = text.split(" ")
    at = int(rng.integers(1, len(words) + 1))
    return " ".join(words[:at] + [f"\u060c {EULOGY_LIGATURE}\u060c"] + words[at:]).replace(" \u060c", "\u060c")


# A mark after anything but a space or another . : ؟ ! (a run such as ... or ؟! stays together), except . and :
# between two digits (3.5, 10:30).
_SPACED_BEFORE = re.compile(r"(?<=[^\s.:\u061f!])\s*((?<!\d)[.:]|[.:](?!\d)|[»\u060c\u061b\u061f!])")
_SPACED_AFTER = re.compile(r"«\s*")


def spaced_punctuation(text: str) -> str:
    """The text as French-style typesetting spaces it: « word », word . word ، (not inside numbers such as 3.5)."""
    return _SPACED_AFTER.sub("« ", _SPACED_BEFORE.sub(r" \1", text)).strip()


def _pick_face(fonts: list[FontFace], rng: np.random.Generator, config: SynthConfig) -> FontFace:
    amiri = [f for f in fonts if f.name.startswith("Amiri")]
    pool = amiri if amiri and rng.random() < config.amiri_share else fonts
    return pool[int(rng.integers(len(pool)))]


def _number_phrase(rng: np.random.Generator) -> str:
    n = int(rng.choice([rng.integers(1, 10), rng.integers(10, 100), rng.integers(100, 1500)]))
    digits = str(n)
    if rng.random() < 0.4:
        digits = digits.translate(str.maketrans("0123456789", ARABIC_INDIC_DIGITS))
    form = rng.integers(6)
    return [f"({digits})", f"سنة {digits}", f"[{digits}]", f"{digits} هـ", f"ج {digits}", digits][form]


QUOTES = (("«", "»"), ("«", "»"), ("(", ")"), ("[", "]"))
PUNCTUATION = "،،.:؛؟!"


def _punctuate(words: list[str], rng: np.random.Generator, config: SynthConfig) -> list[str]:
    """Quote a span and add clause punctuation, as printed books do.

    Corpora transcribed from a few books under-represent marks some printers
    use on every line (guillemets above all); the model must see them in many
    typefaces, with and without spaces inside the quotes.
    """
    words = list(words)
    if len(words) >= 2 and rng.random() < config.quote_probability:
        start = int(rng.integers(len(words)))
        end = min(len(words), start + int(rng.integers(1, 4)))
        opening, closing = QUOTES[int(rng.integers(len(QUOTES)))]
        if rng.random() < 0.4:
            words[start:end] = [opening, *words[start:end], closing]
        else:
            words[start] = opening + words[start]
            words[end - 1] = words[end - 1] + closing
    if rng.random() < config.punctuation_probability:
        i = int(rng.integers(len(words)))
        mark = PUNCTUATION[int(rng.integers(len(PUNCTUATION)))]
        words[i] = words[i] + (mark if rng.random() < 0.7 else " " + mark)
    return words


def make_line_text(corpus: TextCorpus, rng: np.random.Generator, config: SynthConfig) -> str:
    """The text to draw: may hold Arabic-Indic digits, which the label writes as ASCII."""
    words = corpus.sample_words(rng, int(rng.integers(2, 13)))
    if rng.random() < config.number_probability:
        words.insert(int(rng.integers(len(words) + 1)), _number_phrase(rng))
    return " ".join(_punctuate(words, rng, config))


def degrade(ink_on_paper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make a clean rendering look scanned: spread, blur, tilt, noise, paper."""
    img = ink_on_paper.astype(np.float32) / 255.0  # 1 = paper, 0 = ink
    ink = 1.0 - img
    r = rng.random
    if r() < 0.3:
        kernel = np.ones((2, 2), np.uint8)
        ink = cv2.dilate(ink, kernel) if r() < 0.5 else cv2.erode(ink, kernel)
    h, w = ink.shape
    if r() < 0.7:  # slight rotation and shear
        angle = rng.normal(0, 0.6)
        shear = rng.normal(0, 0.04)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[0, 1] += shear
        ink = cv2.warpAffine(ink, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    if r() < 0.6:
        ink = cv2.GaussianBlur(ink, (0, 0), rng.uniform(0.3, 1.3))
    paper = rng.uniform(0.75, 1.0)
    ink_tone = rng.uniform(0.0, 0.35)
    img = paper - ink * (paper - ink_tone)
    if r() < 0.5:  # uneven lighting
        gradient = np.linspace(rng.uniform(-0.15, 0.0), rng.uniform(0.0, 0.15), w, dtype=np.float32)
        img = img + (gradient[None, :] if r() < 0.5 else gradient[::-1][None, :])
    if r() < 0.7:
        img = img + rng.normal(0, rng.uniform(0.01, 0.08), img.shape).astype(np.float32)
    if r() < 0.1:
        speckle = rng.random(img.shape) < rng.uniform(0.0005, 0.004)
        img[speckle] = ink_tone
    img = np.clip(img, 0, 1)
    target_h = int(rng.integers(28, 96))  # scan resolution
    scale = target_h / h
    out = cv2.resize(img, (max(1, int(w * scale)), target_h), interpolation=cv2.INTER_AREA)
    out = (out * 255).astype(np.uint8)
    if r() < 0.15:
        _, out = cv2.threshold(out, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    elif r() < 0.25:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 80))])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


def _with_neighbours(line: np.ndarray, corpus: TextCorpus, face: FontFace, size: int,
                     rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Leave a sliver of the lines above and below, as a line segmenter would."""
    h, w = line.shape
    canvas = [line]
    for above in (True, False):
        if rng.random() >= config.neighbour_probability:
            continue
        other = render_text(make_line_text(corpus, rng, config), face, size)
        sliver = int(rng.integers(2, max(3, h // 5)))
        piece = other[-sliver:] if above else other[:sliver]  # fewer rows when the other line is that short
        strip = np.full((piece.shape[0], w), 255, np.uint8)
        width = min(w, piece.shape[1])
        offset = int(rng.integers(0, w - width + 1))
        strip[:, offset: offset + width] = piece[:, :width]
        canvas.insert(0 if above else len(canvas), strip)
    return np.vstack(canvas)


def synthesize_line(index: int, seed: int, corpus: TextCorpus, fonts: list[FontFace],
                    config: SynthConfig = SynthConfig()) -> tuple[np.ndarray, str, str]:
    """Line ``index`` of the stream seeded by ``seed``: (grey image, label, font)."""
    rng = np.random.default_rng([seed, index])
    for _ in range(20):
        printed = make_line_text(corpus, rng, config)
        text = normalize_text(printed)
        face = _pick_face(fonts, rng, config)
        if text and face.covers(printed):
            break
    else:
        raise RuntimeError("no font covers the sampled text; check the corpus and fonts")
    if (config.eulogy_ligature_probability and rng.random() < config.eulogy_ligature_probability
            and face.covers(EULOGY_LIGATURE)):
        printed = with_eulogy_ligature(printed, rng)
        text = normalize_text(printed)
    if config.spaced_punctuation_probability and rng.random() < config.spaced_punctuation_probability:
        printed = spaced_punctuation(printed)
        text = normalize_text(printed)
    drawn = printed
    if rng.random() < config.dotless_final_ya_probability and face.covers(dotless_final_ya(printed)):
        drawn = dotless_final_ya(printed)
    if config.hamza_omission_probability and rng.random() < config.hamza_omission_probability:
        drawn = without_some_hamzas(drawn, rng)
    if rng.random() < config.vocalise_probability:
        vocalised = _vocalise(drawn, rng)
        drawn = vocalised if face.covers(vocalised) else drawn
    size = int(rng.integers(config.min_font_px, config.max_font_px + 1))
    pad = int(size * rng.uniform(0.05, 0.4))
    image = render_text(drawn, face, size, pad=pad)
    image = _with_neighbours(image, corpus, face, size, rng, config)
    return degrade(image, rng), text, face.name


# -- command line ---------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(corpus: TextCorpus, fonts: list[FontFace], seed: int, out: str, config: SynthConfig) -> None:
    _WORKER.update(corpus=corpus, fonts=fonts, seed=seed, out=out, config=config)


def _write_line(index: int) -> str:
    out = Path(_WORKER["out"])
    image, text, font = synthesize_line(index, _WORKER["seed"], _WORKER["corpus"], _WORKER["fonts"], _WORKER["config"])
    stem = out / f"{index:07d}"
    Image.fromarray(image).save(f"{stem}.png", optimize=False, compress_level=1)
    # Text last: a line counts as written only when its transcription exists.
    Path(f"{stem}.gt.txt").write_text(text + "\n", encoding="utf-8")
    return font


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.synth",
        description="Render synthetic, scan-like Arabic text lines (PNG + .gt.txt pairs).",
    )
    parser.add_argument("--lines", type=int, required=True, help="number of lines to have in --out")
    parser.add_argument("--out", required=True, help="output folder (created; existing lines are kept)")
    parser.add_argument("--corpus", nargs="+", default=[DEFAULT_CORPUS],
                        help="text files or folders (*.txt, *.gt.txt) to draw words from "
                             "(default: %(default)s)")
    parser.add_argument("--exclude-corpus", nargs="*", default=[],
                        help="skip corpus files whose path from the --corpus folder's own name down contains "
                             "one of these strings (keep a held-out book's text out of training)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fonts", nargs="*", help="font face names (default: all installed book faces)")
    parser.add_argument("--eulogy-ligature-rate", type=float, default=0.0, metavar="P",
                        help="share of lines (in faces that have it) with the eulogy glyph ﷺ inserted, labelled as "
                             "transcriptions spell it (صلى الله عليه وسلم); default 0: none, the lines of earlier recipes")
    parser.add_argument("--spaced-punctuation-rate", type=float, default=0.0, metavar="P",
                        help="share of lines set French-style, a space inside « » and before . ، : ؛ ؟ ! (drawn and "
                             "labelled); default 0: none, the lines of earlier recipes")
    parser.add_argument("--hamza-omission-rate", type=float, default=0.0, metavar="P",
                        help="share of lines on which each أ and إ is drawn bare (ا) with probability 1/2, as many "
                             "editions print them, the label keeping the hamza; default 0: none, the lines of "
                             "earlier recipes")
    parser.add_argument("--compare-with", nargs="*", default=[],
                        help="real line folders to show beside the synthetic ones in contact-sheet.png")
    args = parser.parse_args(argv)
    for name in ("eulogy_ligature_rate", "spaced_punctuation_rate", "hamza_omission_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} wants a share in [0, 1], got {getattr(args, name):g}")
    config = SynthConfig(eulogy_ligature_probability=args.eulogy_ligature_rate,
                         spaced_punctuation_probability=args.spaced_punctuation_rate,
                         hamza_omission_probability=args.hamza_omission_rate)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    require_shaping()
    fonts = find_book_fonts(tuple(args.fonts) if args.fonts else find_book_fonts.__defaults__[0])
    if not fonts:
        parser.error("no Arabic book fonts installed; see training/fonts.py for the Debian packages")
    corpus = TextCorpus.from_paths(args.corpus, exclude=args.exclude_corpus)
    log.info("%d fonts, corpus of %d words from %d files", len(fonts), corpus.num_words, corpus.num_files)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(args.lines) if not (out / f"{i:07d}.gt.txt").exists()]
    log.info("%d of %d lines to render (%d already there)", len(todo), args.lines, args.lines - len(todo))
    from tqdm import tqdm

    start = time.monotonic()
    used: dict[str, int] = {}
    with multiprocessing.get_context("fork").Pool(
        args.workers, initializer=_init_worker, initargs=(corpus, fonts, args.seed, str(out), config)
    ) as pool:
        for font in tqdm(pool.imap_unordered(_write_line, todo, chunksize=16), total=len(todo),
                         unit="line", file=sys.stderr, disable=None):
            used[font] = used.get(font, 0) + 1
    elapsed = time.monotonic() - start
    rate = len(todo) / elapsed if elapsed > 0 else 0.0
    log.info("rendered %d lines in %.1f s (%.1f lines/s)", len(todo), elapsed, rate)
    (out / "synth.json").write_text(json.dumps(
        {"lines": args.lines, "seed": args.seed, "fonts": [f.name for f in fonts],
         "corpus": args.corpus, "exclude_corpus": args.exclude_corpus,
         "eulogy_ligature_rate": args.eulogy_ligature_rate, "spaced_punctuation_rate": args.spaced_punctuation_rate,
         "hamza_omission_rate": args.hamza_omission_rate,
         "fonts_used_this_run": used, "lines_per_second": round(rate, 1)},
        ensure_ascii=False, indent=1), encoding="utf-8")
    from .contact_sheet import build_sheet

    build_sheet([str(out)] + args.compare_with, per_source=6, seed=args.seed).save(out / "contact-sheet.png")
    print(f"{len(todo)} lines rendered in {elapsed:.1f} s ({rate:.1f} lines/s) -> {out} "
          f"(look at {out / 'contact-sheet.png'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
