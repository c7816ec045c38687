"""The command line's decoding options, shared by ``arabic-ocr lines`` and ``arabic-ocr pages``.

Greedy unless asked: ``--lm FILE`` decodes with the beam search and that
character language model (``recognition.beam_search``); ``--beam N`` alone, a
beam search without one.
"""

from __future__ import annotations

import argparse
import math
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
    group.add_argument("--lm-weight", type=float, default=None, metavar="A",
                       help=f"weight of the LM's log probability, a finite number >= 0 (default {DEFAULTS.alpha}; "
                            "needs --lm)")
    group.add_argument("--lm-bonus", type=float, default=None, metavar="B",
                       help=f"log-score bonus per character (default {DEFAULTS.beta} with --lm, "
                            f"{BONUS_WITHOUT_LM} without; needs --lm or --beam)")
    group.add_argument("--beam", type=int, default=None, metavar="N",
                       help=f"beam width (default {DEFAULTS.beam} with --lm; alone: a beam search without LM)")


def recognizer_options(args: argparse.Namespace) -> dict:
    """``Recognizer`` keyword arguments for the parsed options (empty: greedy). Raises ``ValueError``."""
    # Weights given without the search they weigh would be silently ignored: say so instead.
    if args.lm_weight is not None and args.lm is None:
        raise ValueError("--lm-weight weighs a language model: give --lm FILE too")
    if args.lm is None and args.beam is None:
        if args.lm_bonus is not None:
            raise ValueError("--lm-bonus is a beam search setting: give --lm FILE or --beam N too")
        return {}
    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be at least 1 (got {args.beam})")
    alpha = DEFAULTS.alpha if args.lm_weight is None else args.lm_weight
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"--lm-weight must be a finite number >= 0 (got {args.lm_weight})")
    bonus = args.lm_bonus if args.lm_bonus is not None else DEFAULTS.beta if args.lm else BONUS_WITHOUT_LM
    if not math.isfinite(bonus):
        raise ValueError(f"--lm-bonus must be a finite number (got {args.lm_bonus})")
    settings = BeamSearchSettings(beam=DEFAULTS.beam if args.beam is None else args.beam, alpha=alpha, beta=bonus)
    return {"language_model": args.lm, "beam_search": settings}
