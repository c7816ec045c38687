"""How reports write a figure, so that the model card and the leave-one-out tables read alike."""

from __future__ import annotations


def percent(x: float | None) -> str:
    """A rate (0.0123) as a percentage with two decimals ("1.23%"); "n/a" where there is none."""
    return "n/a" if x is None else f"{100 * x:.2f}%"
