"""A character n-gram language model: its file, and the probabilities it gives.

Built by ``python -m training.char_lm build`` (counting, smoothing, pruning);
read here, where decoding needs it (``recognition.beam_search``). NumPy only.

What it models: normalised text (``recognition.text``, the model's convention)
in logical order, one line at a time, from a start symbol to an end symbol.
Two kinds of characters are folded into one symbol each before counting and
scoring: decimal digits (``<digit>``) and strong left-to-right characters,
i.e. Latin letters (``<ltr>``). Why: a mirrored model emits a left-to-right
run last character first (``recognition.text``), the rest of the line in
logical order; once a run's characters are one symbol, the run reads the same
either way, so the model's output can be scored as it comes. Which digit it is
stays the image's business: a class's probability is shared evenly by the
alphabet's characters that fold to it. (The one approximation left: a
separator inside a run of digits, "12/3", is met at its reading-order place.)

The file (``.npz``, read without pickle) holds a JSON ``header`` that says what
it is (order, symbols, text convention, smoothing, pruning, the training text's
sources and line counts, what was excluded) and, for each order ``n``, the
contexts of ``n - 1`` symbols kept, each with its explicit (discounted)
probabilities and its backoff weight: interpolated Kneser-Ney, so

    P(c | h) = explicit(h, c) + backoff(h) * P(c | h without its first symbol)

and a context that is not stored has the distribution of its shorter self.
"""

from __future__ import annotations

import json
import math
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "arabic-ocr-char-lm"
VERSION = 1
BOS, EOS, UNK, DIGIT, LTR = "<s>", "</s>", "<unk>", "<digit>", "<ltr>"
SPECIALS = (BOS, EOS, UNK, DIGIT, LTR)  # indices 0..4 in every file
# Limits on what a file may ask of the reader, checked before the arrays are read: the shipped 5-gram holds
# 1.7 MB of arrays and 150,000 n-grams; every n-gram costs some 100 bytes once loaded (Python dicts).
MAX_ORDER = 16
MAX_ARRAY_BYTES = 64 * 1024 * 1024   # all members together, uncompressed
MAX_NGRAMS = 5_000_000


class LanguageModelError(ValueError):
    """A language model file that cannot be used (missing, corrupt, or made for other text)."""


def fold(char: str) -> str:
    """The symbol a character is counted and scored as (see the module docstring)."""
    if unicodedata.decimal(char, None) is not None:
        return DIGIT
    if unicodedata.bidirectional(char) == "L":
        return LTR
    return char


@dataclass(frozen=True)
class OrderTable:
    """The contexts of one order: row ``i`` of ``contexts`` has ``symbols/probs[offsets[i]:offsets[i+1]]``."""

    contexts: np.ndarray  # uint8 (contexts, order - 1)
    backoff: np.ndarray   # float32 (contexts,)
    offsets: np.ndarray   # int64 (contexts + 1,)
    symbols: np.ndarray   # uint8 (entries,)
    probs: np.ndarray     # float32 (entries,)


def save(path: str | Path, header: dict, tables: list[OrderTable]) -> None:
    """Write a model (``training.char_lm`` builds ``header`` and ``tables``); order ``n`` is ``tables[n - 1]``."""
    arrays = {"header": np.array(json.dumps({**header, "format": FORMAT, "version": VERSION,
                                              "order": len(tables)}, ensure_ascii=False))}
    for n, table in enumerate(tables, 1):
        arrays.update({f"o{n}_contexts": table.contexts.astype(np.uint8), f"o{n}_backoff": table.backoff.astype(np.float32),
                       f"o{n}_offsets": table.offsets.astype(np.int64), f"o{n}_symbols": table.symbols.astype(np.uint8),
                       f"o{n}_probs": table.probs.astype(np.float32)})
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


class CharacterLanguageModel:
    """A loaded model: ``distribution(context)`` over its symbols, ``log_prob(context, symbol)``.

    Contexts are ``bytes`` of symbol indices (``encode``), oldest first; only
    the last ``order - 1`` count. Distributions are cached; the cache is a plain
    dict replaced when full, so sharing one model between threads is safe.
    """

    CACHE_LIMIT = 200_000

    def __init__(self, header: dict, tables: list[OrderTable], source: str = ""):
        self.header = header
        self.source = source
        self.order = len(tables)
        self.symbols: tuple[str, ...] = tuple(header["symbols"])
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.text_normalisation: str = header["text_normalisation"]
        # Per order, context -> (backoff, {symbol: explicit probability}): Python objects, because decoding
        # asks for one symbol at a time.
        self._rows = [_rows(table) for table in tables]
        unigram = tables[0]
        predicted = np.ones(len(self.symbols))
        predicted[self.index[BOS]] = 0.0  # the start symbol is a context, never a prediction
        base = predicted / predicted.sum()
        self._unigram = base * float(unigram.backoff[0])
        self._unigram[unigram.symbols] += unigram.probs
        self._cache: dict[bytes, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | Path) -> CharacterLanguageModel:
        """Read and check a model file; anything wrong with it raises ``LanguageModelError``."""
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                header = json.loads(str(_read_member(archive, "header").item()))
                if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
                    said = header if isinstance(header, dict) else {}
                    raise LanguageModelError(f"not a {FORMAT} version {VERSION} file "
                                             f"(it says {said.get('format')!r} version {said.get('version')!r})")
                order = header.get("order")
                if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= MAX_ORDER:
                    raise LanguageModelError(f"the order must be a whole number from 1 to {MAX_ORDER}, not {order!r}")
                tables = [OrderTable(*(_read_member(archive, f"o{n}_{part}")
                                       for part in ("contexts", "backoff", "offsets", "symbols", "probs")))
                          for n in range(1, order + 1)]
            # Offsets as signed 64-bit before checking: unsigned ones would wrap in the checks' differences.
            tables = [OrderTable(t.contexts, t.backoff, t.offsets.astype(np.int64) if t.offsets.dtype.kind in "iu"
                                 else t.offsets, t.symbols, t.probs) for t in tables]
            _check(header, tables)
            return cls(header, tables, str(path))
        except FileNotFoundError:
            raise LanguageModelError(f"no language model file {path}") from None
        except LanguageModelError as exc:
            raise LanguageModelError(f"{path}: {exc}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, IsADirectoryError) as exc:
            raise LanguageModelError(f"{path} is not a language model file (.npz): {exc}") from None
        except Exception as exc:  # a crafted file can break parsing in many ways: every one is "corrupt", never a crash
            raise LanguageModelError(f"{path}: corrupt language model ({type(exc).__name__}: {exc})") from None

    def encode(self, text: str) -> bytes:
        """Normalised text -> symbol indices (folded; characters never seen in training are ``<unk>``)."""
        unk = self.index[UNK]
        return bytes(self.index.get(fold(c), unk) for c in text)

    def start(self) -> bytes:
        return bytes([self.index[BOS]])

    def distribution(self, context: bytes) -> np.ndarray:
        """P(symbol | context) for every symbol (float64, sums to 1; the start symbol gets 0)."""
        context = context[-(self.order - 1):] if self.order > 1 else b""
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        if not context:
            result = self._unigram
        else:
            lower = self.distribution(context[1:])
            row = self._rows[len(context)].get(context)
            if row is None:
                result = lower
            else:
                backoff, explicit = row
                result = lower * backoff
                result[list(explicit)] += list(explicit.values())
        result.flags.writeable = False  # shared through the cache
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache = {}
        self._cache[context] = result
        return result

    def prob(self, context: bytes, symbol: int) -> float:
        """P(symbol | context), one symbol (index): what decoding asks, cheaper than a whole distribution."""
        p = float(self._unigram[symbol])
        for length in range(1, min(len(context), self.order - 1) + 1):
            row = self._rows[length].get(context[-length:])
            if row is None:
                break  # a longer context ending in this one is never stored (pruning goes by counts)
            p = row[1].get(symbol, 0.0) + row[0] * p
        return p

    def log_prob(self, context: bytes, symbol: str) -> float:
        return math.log(self.prob(context, self.index[symbol]))

    def score(self, text: str) -> float:
        """Natural-log probability of one whole normalised line, end symbol included."""
        symbols = self.encode(text) + bytes([self.index[EOS]])
        context, total = self.start(), 0.0
        for s in symbols:
            total += math.log(self.distribution(context)[s])
            context = (context + bytes([s]))[-max(self.order - 1, 1):]
        return total

    def describe(self) -> str:
        """One line for logs and reports."""
        text = self.header.get("training_text", {})
        return (f"{self.order}-gram character LM, {len(self.symbols)} symbols, "
                f"{sum(len(explicit) for rows in self._rows for _, explicit in rows.values())} n-grams, "
                f"{text.get('lines', '?')} training lines")


def _rows(table: OrderTable) -> dict[bytes, tuple[float, dict[int, float]]]:
    bounds = table.offsets.tolist()
    symbols, probs, backoff = table.symbols.tolist(), table.probs.tolist(), table.backoff.tolist()
    return {context.tobytes(): (backoff[i], dict(zip(symbols[bounds[i]:bounds[i + 1]], probs[bounds[i]:bounds[i + 1]])))
            for i, context in enumerate(table.contexts)}


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """One ``.npy`` member by its expected name, refused before reading if the archive or its shape is too big.

    ``np.load`` would allocate whatever shape a member's header declares before reading its data; here the
    declared size must fit in the member's own (uncompressed) size, which the archive's total bounds.
    """
    members = archive.infolist()
    if sum(info.file_size for info in members) > MAX_ARRAY_BYTES:
        raise LanguageModelError(f"its arrays take more than {MAX_ARRAY_BYTES} bytes uncompressed")
    try:
        info = archive.getinfo(name + ".npy")
    except KeyError:
        raise LanguageModelError(f"corrupt language model: no array {name!r}") from None
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise LanguageModelError(f"array {name!r}: unsupported .npy version {version}")
        if dtype.hasobject:
            raise LanguageModelError(f"array {name!r} holds Python objects (not read: no pickle)")
        size = math.prod(shape) * dtype.itemsize
        if size > info.file_size:
            raise LanguageModelError(f"array {name!r} declares {shape}, more than its member holds")
        data = member.read(size)
    if len(data) != size:
        raise LanguageModelError(f"array {name!r} is cut short")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def _check(header: dict, tables: list[OrderTable]) -> None:
    """The structure a file must have for ``distribution`` to be a probability distribution."""
    symbols = header["symbols"]
    if not isinstance(symbols, list) or tuple(symbols[: len(SPECIALS)]) != SPECIALS or len(symbols) > 256 \
            or len(set(symbols)) != len(symbols):
        raise LanguageModelError(f"symbols must be unique, at most 256, starting with {', '.join(SPECIALS)}")
    if not isinstance(header.get("text_normalisation"), str):
        raise LanguageModelError("the header does not say which text normalisation the model was built on")
    if not tables:
        raise LanguageModelError("a language model needs at least one order")
    if sum(len(t.probs) for t in tables) > MAX_NGRAMS:
        raise LanguageModelError(f"more than {MAX_NGRAMS} n-grams")
    for n, t in enumerate(tables, 1):
        if t.contexts.dtype != np.uint8 or t.symbols.dtype != np.uint8 or t.offsets.dtype.kind not in "iu" \
                or t.probs.dtype.kind != "f" or t.backoff.dtype.kind != "f":
            raise LanguageModelError(f"order {n}: unexpected array types")
        rows = len(t.backoff)
        if t.contexts.shape != (rows, n - 1) or t.offsets.shape != (rows + 1,) or t.symbols.shape != t.probs.shape \
                or (n == 1 and rows != 1):
            raise LanguageModelError(f"order {n}: table shapes do not agree")
        if t.offsets[0] != 0 or t.offsets[-1] != len(t.probs) or np.any(np.diff(t.offsets) < 0):
            raise LanguageModelError(f"order {n}: offsets out of order")
        if len(t.symbols) and int(t.symbols.max()) >= len(symbols) or t.contexts.size and int(t.contexts.max()) >= len(symbols):
            raise LanguageModelError(f"order {n}: a symbol index beyond the {len(symbols)} symbols")
        if not (np.all((t.probs >= 0) & (t.probs <= 1)) and np.all((t.backoff > 0) & (t.backoff <= 1))):
            # backoff > 0: every symbol keeps a probability above 0 (the end symbol too, which decoding needs)
            raise LanguageModelError(f"order {n}: probabilities outside [0, 1] or a backoff weight of 0")
        explicit = np.add.reduceat(np.append(t.probs.astype(np.float64), 0.0), t.offsets[:-1]) \
            * (np.diff(t.offsets) > 0)
        if not np.allclose(explicit + t.backoff, 1.0, atol=1e-4):
            raise LanguageModelError(f"order {n}: a context's probabilities do not sum to 1")
