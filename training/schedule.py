"""When to stop training and how fast to learn: pure rules, no TensorFlow, so they are tested cheaply.

``EarlyStopping`` judges the validation CER after each epoch. On a small validation set (a book's
held-out slice of 20-80 lines, where one line is a large share of the CER) the raw CER jumps from
epoch to epoch, so the rule can smooth it (an exponential moving average) and refuses to stop before
``min_steps`` training steps, however the first epochs looked.

``cosine_learning_rate`` is a linear warm-up then a cosine decay to ``floor`` times the peak, driven
by the run's progress: the larger of its share of the step budget and of the time budget, so a run
cut by its time budget still ends at the low learning rate instead of mid-descent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    patience: int                 # epochs without a better (smoothed) CER before stopping
    min_steps: int = 0            # no stopping before this many training steps
    smoothing: float = 0.0        # weight of the past in the moving average (0: the raw CER)
    smoothed: float | None = None
    best: float | None = None
    since_best: int = 0

    def update(self, cer: float) -> bool:
        """Record one epoch's validation CER; True when it is the best so far (by the smoothed value)."""
        self.smoothed = cer if self.smoothed is None else self.smoothing * self.smoothed + (1 - self.smoothing) * cer
        if self.best is None or self.smoothed < self.best:
            self.best, self.since_best = self.smoothed, 0
            return True
        self.since_best += 1
        return False

    def should_stop(self, step: int) -> bool:
        return step >= self.min_steps and self.since_best >= self.patience

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EarlyStopping:
        return cls(**data)


def cosine_learning_rate(peak: float, progress: float, warmup: float = 0.0, floor: float = 0.05) -> float:
    """The learning rate at ``progress`` (0 to 1) of a run: warm-up over the first ``warmup`` share."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return peak * max(progress / warmup, 0.01)
    decay = (progress - warmup) / max(1e-9, 1 - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * decay)))


def run_progress(step: int, max_steps: int, seconds: float, budget_seconds: float | None) -> float:
    """How far a run is through its budgets (the larger share: the one that will end it)."""
    shares = []
    if max_steps:
        shares.append(step / max_steps)
    if budget_seconds:
        shares.append(seconds / budget_seconds)
    return max(shares) if shares else 0.0
