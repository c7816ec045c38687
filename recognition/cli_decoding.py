"""The command line's decoding options, shared by ``arabic-ocr lines`` and ``arabic-ocr pages``.

Greedy unless asked: ``--lm FILE`` decodes with the beam search and that
character language model (``recognition.beam_search``); ``--beam N`` alone, a
beam search without one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .beam_search import BeamSearchSettings

DEFAULTS = BeamSearchSettings()
# Without an LM the bench found a smaller bonus best (bench/README.md, "Language model in beam search").
BONUS_WITHOUT_LM = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (default: greedy)")
    group.add_argument("--lm", type=Path, default=None, metavar="FILE",
                       help="a character language model (.npz, python -m training.char_lm): decode with a beam "
                            "search weighing it")
    group.add_argument("--lm-weight", type=float, default=DEFAULTS.alpha, metavar="A",
                       help="weight of the LM's log probability (default %(default)s)")
    group.add_argument("--lm-bonus", type=float, default=None, metavar="B",
                       help=f"log-score bonus per character (default {DEFAULTS.beta} with --lm, "
                            f"{BONUS_WITHOUT_LM} without)")
    group.add_argument("--beam", type=int, default=None, metavar="N",
                       help=f"beam width (default {DEFAULTS.beam} with --lm; alone: a beam search without LM)")


def recognizer_options(args: argparse.Namespace) -> dict:
    """``Recognizer`` keyword arguments for the parsed options (empty: greedy). Raises ``ValueError``."""
    if args.lm is None and args.beam is None:
        return {}
    bonus = args.lm_bonus if args.lm_bonus is not None else DEFAULTS.beta if args.lm else BONUS_WITHOUT_LM
    settings = BeamSearchSettings(beam=args.beam or DEFAULTS.beam, alpha=args.lm_weight, beta=bonus)
    return {"language_model": args.lm, "beam_search": settings}
