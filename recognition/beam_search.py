"""CTC prefix beam search, optionally with a character language model (opt-in; greedy is the default).

A prefix's score is ``log P_ctc(prefix) + alpha * log P_lm(prefix) + beta * len(prefix)``:
``P_ctc`` sums over every frame path that collapses to the prefix (blank-ending
and character-ending paths kept apart, as CTC needs), ``P_lm`` is the
character model (``recognition.char_lm``), ``beta`` a bonus per character
against the LM's pull towards short readings. A whole line adds the LM's end
symbol. Order: the LM scores labels as the model emits them; a mirrored model
emits Arabic in logical order and left-to-right runs last character first,
which the LM's folding of digits and Latin letters makes the same to it
(``recognition.char_lm``).

Fast because most frames need no search: a frame whose blank is near certain
(``blank_skip``) proposes no character, only moves the prefixes along; other
frames propose at most ``top_k`` classes at ``min_prob`` or more; a prefix that
falls ``prune`` below the best is dropped (and one that must, never made). The
beam is small. Deterministic: candidates are taken in class order, prefixes are nodes
of a trie numbered in creation order, and ties rank the older node first.

Confidences keep their definitions (``recognition.ctc``): they are computed on
a frame path of the chosen labels (``aligned_path``): the greedy path where the
labels agree with the greedy reading, the best path of the differing labels
between, so a line read alike reports alike, and a character the LM put in is
scored by its own class's probability in its frames (usually low).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

from .alphabet import BLANK_INDEX, Alphabet
from .char_lm import EOS, UNK, CharacterLanguageModel, LanguageModelError, fold
from .ctc import DecodedLine, decode_path

# Agreeing characters taken in on each side of a difference when aligning the chosen labels: the edit
# alignment is one of several, and with one more character each side the path found was as probable as
# the whole line's best path (Viterbi) on all 284 of the held-out book's 790 lines that the shipped LM
# changed, at a tenth of the cost (0.2 against 2.5 ms a line).
MARGIN = 1

@dataclass(frozen=True)
class BeamSearchSettings:
    """How wide and how LM-led the search is.

    The defaults are what ``bench.language_model`` chose for ``arabic-crnn-v2-int8`` with
    ``models/arabic-char-lm.npz`` on the first half of the held-out book (the swift model chose
    the same weights with a 4-gram); the speed settings were fixed beforehand (they change
    no more than a character of that half).
    """

    beam: int = 8
    alpha: float = 0.2        # weight of the LM's log probability
    beta: float = 1.5         # bonus per character, natural-log units (without an LM, 0.5 read best)
    top_k: int = 4            # classes proposed per frame at most
    min_prob: float = 0.01    # a class below this in a frame is not proposed
    blank_skip: float = 0.99  # a frame whose blank reaches this proposes nothing
    prune: float = 5.0        # a prefix more than this (natural log) below the best is dropped

    def __post_init__(self):
        if self.beam < 1 or self.top_k < 1:
            raise ValueError("beam and top_k must be at least 1")
        if not all(math.isfinite(x) for x in (self.alpha, self.beta, self.min_prob, self.blank_skip, self.prune)):
            raise ValueError("the LM weight, the bonus per character and the search thresholds must be finite numbers")
        if self.alpha < 0:
            raise ValueError("the LM weight alpha cannot be negative")


class CTCBeamSearch:
    """``decode(probs)`` -> ``DecodedLine``, a drop-in for ``ctc.greedy_decode``; safe to share between threads."""

    def __init__(self, alphabet: Alphabet, language_model: CharacterLanguageModel | None = None,
                 settings: BeamSearchSettings = BeamSearchSettings(), text_normalisation: str | None = None):
        self.alphabet = alphabet
        self.lm = language_model
        self.settings = settings
        if language_model is not None:
            if text_normalisation is not None and text_normalisation != language_model.text_normalisation:
                raise LanguageModelError(
                    f"the language model was built on text normalised as {language_model.text_normalisation!r}, "
                    f"the recognition model writes {text_normalisation!r}")
            # Each class scores as its folded symbol, whose probability the classes folding to it share.
            symbols = [language_model.index.get(fold(c), language_model.index[UNK]) for c in alphabet.characters]
            sharers = np.bincount(symbols, minlength=len(language_model.symbols))
            self._class_symbol = [0] + symbols
            self._class_share = [1.0] + [1.0 / int(sharers[s]) for s in symbols]
            self._eos = language_model.index[EOS]
        self._scores: dict[bytes, float] = {}

    def _extension_score(self, context: bytes, symbol: int, share: float) -> float:
        """alpha * log(P_lm(symbol | context) * the share of it this class has) + beta, cached."""
        key = context + bytes((symbol,))
        score = self._scores.get(key)
        if score is None:
            p = self.lm.prob(context, symbol) * share
            # With alpha 0 the LM has no say: 0 * log(0) would be NaN, which ranks nothing.
            score = (self.settings.alpha * _log(p) if self.settings.alpha else 0.0) + self.settings.beta
            if len(self._scores) >= CharacterLanguageModel.CACHE_LIMIT:
                self._scores = {}
            self._scores[key] = score
        return score

    def __call__(self, probs: np.ndarray) -> DecodedLine:
        return self.decode(probs)

    def decode(self, probs: np.ndarray) -> DecodedLine:
        if probs.ndim != 2:
            raise ValueError(f"expected (frames, classes), got shape {probs.shape}")
        if probs.shape[0] == 0:
            return DecodedLine((), (), 0.0)
        labels = self.search(probs)
        greedy_path = probs.argmax(axis=1)
        greedy = greedy_path[np.flatnonzero(np.diff(greedy_path, prepend=-1))]
        if tuple(greedy[greedy != BLANK_INDEX].tolist()) == labels:
            return decode_path(probs, greedy_path)
        return decode_path(probs, aligned_path(probs, greedy_path, labels))

    def search(self, probs: np.ndarray) -> tuple[int, ...]:
        """The best labelling found (class indices, in the model's emission order)."""
        s = self.settings
        lm = self.lm
        top_k = min(s.top_k, probs.shape[1] - 1)
        # Per frame, the classes it proposes (top_k at min_prob or more, in class order), as Python lists:
        # converting a whole line's matrix would cost more than the search.
        candidates = np.sort(np.argpartition(-probs[:, 1:], top_k - 1, axis=1)[:, :top_k] + 1, axis=1)
        candidate_probs = np.take_along_axis(probs, candidates, axis=1)
        proposals_by_frame = [[(c, p) for c, p in zip(cs, ps) if p >= s.min_prob]
                              for cs, ps in zip(candidates.tolist(), candidate_probs.tolist())]
        blanks = probs[:, 0].tolist()
        prob = probs.item  # prob(t, c): one value, no row conversion
        # The trie of prefixes: node 0 is the empty one.
        label, parent, context, lm_score = [BLANK_INDEX], [-1], [lm.start() if lm else b""], [0.0]
        children: dict[tuple[int, int], int] = {}
        keep = lm.order - 1 if lm else 0
        # A new prefix scores at most its acoustic probability times e^beta (the LM only lowers it); one that
        # would fall ``prune`` below its own parent staying put is not made.
        hopeless = math.exp(-s.prune - max(s.beta, 0.0))
        beams = {0: (1.0, 0.0)}  # node -> (P of paths ending in blank, P of paths ending in its last label)
        for t, blank in enumerate(blanks):
            if blank >= s.blank_skip:
                beams = {n: ((pb + pnb) * blank, pnb * prob(t, label[n]) if n else 0.0) for n, (pb, pnb) in beams.items()}
                continue
            proposals = proposals_by_frame[t]
            grown: dict[int, list[float]] = {}
            for node, (pb, pnb) in beams.items():
                total = pb + pnb
                last = label[node]
                stay_b, stay_nb = total * blank, (pnb * prob(t, last) if node else 0.0)
                here = grown.get(node)
                if here is None:
                    grown[node] = [stay_b, stay_nb]
                else:
                    here[0] += stay_b
                    here[1] += stay_nb
                floor = (stay_b + stay_nb) * hopeless
                for c, p in proposals:
                    gain = (pb if c == last else total) * p
                    if gain < floor:
                        continue
                    child = children.get((node, c))
                    if child is None:
                        child = children[(node, c)] = len(label)
                        label.append(c)
                        parent.append(node)
                        if lm:
                            symbol = self._class_symbol[c]
                            context.append((context[node] + bytes((symbol,)))[-keep:] if keep else b"")
                            lm_score.append(lm_score[node]
                                            + self._extension_score(context[node], symbol, self._class_share[c]))
                        else:
                            context.append(b"")
                            lm_score.append(lm_score[node] + s.beta)
                    there = grown.get(child)
                    if there is None:
                        grown[child] = [0.0, gain]
                    else:
                        there[1] += gain
            if len(grown) == 1:  # inside a sure character or blank: nothing to rank
                (n, (b, nb)), = grown.items()
                beams = {n: (b / (b + nb), nb / (b + nb)) if b + nb > 0 else (b, nb)}
                continue
            # Keep the best ``beam`` prefixes, none more than ``prune`` (log) below the best; ties: older first.
            ranked = sorted([(-math.log(b + nb) - lm_score[n] if b + nb > 0 else math.inf, n)
                             for n, (b, nb) in grown.items()])
            cutoff = ranked[0][0] + s.prune
            beams = {}
            scale = 0.0
            for score, n in ranked[: s.beam]:
                if score > cutoff:
                    break
                b, nb = grown[n]
                scale = scale or b + nb  # the best's total: the kept totals are rescaled so it is 1
                beams[n] = (b / scale, nb / scale)

        def final(node: int) -> float:
            pb, pnb = beams[node]
            end = s.alpha * _log(lm.prob(context[node], self._eos)) if lm and s.alpha else 0.0
            return _log(pb + pnb) + lm_score[node] + end

        best = min(beams, key=lambda n: (-final(n), n))
        labels = []
        while best:
            labels.append(label[best])
            best = parent[best]
        return tuple(reversed(labels))


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -math.inf


def aligned_path(probs: np.ndarray, greedy_path: np.ndarray, labels: tuple[int, ...]) -> np.ndarray:
    """A frame path (a class per frame) that collapses to ``labels``, for their confidences.

    Where ``labels`` agree with the greedy reading (a minimal alignment of the two), the greedy
    path; in the frames between the agreeing characters around each difference, the best path
    of the differing labels (``best_alignment``), widened to more characters where too few
    frames lie between. So the confidences of characters that a language model did not change
    are the greedy ones, and the work is a few frames per difference rather than a whole line.
    """
    starts = np.flatnonzero(np.diff(greedy_path, prepend=-1))
    ends = np.append(starts[1:], len(greedy_path))
    emitted = greedy_path[starts] != BLANK_INDEX
    greedy = greedy_path[starts][emitted].tolist()
    first_frame, end_frame = starts[emitted].tolist(), ends[emitted].tolist()
    blocks = []
    for o in Levenshtein.opcodes(greedy, labels):
        if o.tag != "equal":  # with MARGIN agreeing characters each side: the edit alignment is one of several
            left, right = min(o.src_start, MARGIN), min(len(greedy) - o.src_end, MARGIN)
            blocks.append([o.src_start - left, o.src_end + right, o.dest_start - left, o.dest_end + right])

    def window(block):
        """The frames strictly between the agreeing characters around ``block``, its labels, those characters."""
        i0, i1, j0, j1 = block
        begin, left = (end_frame[i0 - 1], greedy[i0 - 1]) if i0 else (0, None)
        end, right = (first_frame[i1], greedy[i1]) if i1 < len(greedy) else (len(greedy_path), None)
        return begin, end, labels[j0:j1], left, right

    def fits(block) -> bool:
        begin, end, middle, left, right = window(block)
        chain = [x for x in (left, *middle, right) if x is not None]
        repeats = sum(a == b for a, b in zip(chain, chain[1:]))  # a blank must part equal neighbours
        return end - begin >= len(middle) + repeats

    while True:
        merged: list[list[int]] = []
        for block in blocks:
            if merged and merged[-1][1] >= block[0]:
                merged[-1] = [merged[-1][0], block[1], merged[-1][2], block[3]]
            else:
                merged.append(block)
        blocks = merged
        tight = [b for b in blocks if not fits(b)]
        if not tight:
            break
        for b in tight:  # take in one more agreeing character on each side
            grow_left, grow_right = min(b[0], 1), min(len(greedy) - b[1], 1)
            b[:] = [b[0] - grow_left, b[1] + grow_right, b[2] - grow_left, b[3] + grow_right]
    path = greedy_path.copy()
    for block in blocks:
        begin, end, middle, left, right = window(block)
        path[begin:end] = best_alignment(probs[begin:end], tuple(middle), blank_first=bool(middle) and middle[0] == left,
                                         blank_last=bool(middle) and middle[-1] == right)
    return path


def best_alignment(probs: np.ndarray, labels: tuple[int, ...], blank_first: bool = False,
                   blank_last: bool = False) -> np.ndarray:
    """The most probable frame path (a class per frame) that collapses to ``labels`` (Viterbi).

    ``blank_first``/``blank_last``: the path must start/end on a blank (it sits beside a
    character equal to its first/last label, which it would otherwise merge with).
    """
    frames, size = probs.shape[0], 2 * len(labels) + 1
    states = np.full(size, BLANK_INDEX)
    states[1::2] = labels
    if not labels:
        return states.repeat(frames)
    logp = np.log(np.maximum(probs[:, states], 1e-30))
    # A state comes from itself, the one before, or (a label after a blank, unlike the label
    # before that blank) two before.
    no_jump = np.ones(size, bool)
    no_jump[3::2] = states[3::2] == states[1:-2:2]
    impossible = -1e30
    came_from = np.full((3, size + 2), impossible)  # rows: stay, from one before, from two before
    score = np.full(size, impossible)
    score[0] = logp[0, 0]
    if not blank_first:
        score[1] = logp[0, 1]
    back = np.zeros((frames, size), np.int64)
    columns = np.arange(size) + 2
    for t in range(1, frames):
        came_from[0, 2:] = score
        came_from[1, 3:] = score[:-1]
        came_from[2, 4:] = score[:-2]
        came_from[2, 2:][no_jump] = impossible
        back[t] = came_from[:, 2:].argmax(axis=0)
        score = came_from[back[t], columns] + logp[t]
    state = size - 1 if blank_last or score[-1] >= score[-2] else size - 2
    path = np.empty(frames, np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = states[state]
        state -= int(back[t, state])
    return path
