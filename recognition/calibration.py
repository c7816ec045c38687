"""Confidence calibration: monotone maps stored in the model file, and how to measure them.

A model's raw confidences (``recognition.ctc``) rank well but are not
probabilities. ``training.calibrate`` fits, on a held-out book, one monotone
map for characters (raw score -> probability the character is right) and one
for lines (raw score -> probability the line is read without any error), and
stores them in the ONNX metadata under ``confidence_calibration``; decoding
applies them. Monotone maps never change the order, only the scale.

A map is a short table of knots (raw score, probability), interpolated
linearly and held flat beyond its ends, whatever fitted it: binned isotonic
regression where examples are many (characters: tens of thousands on a book),
logistic regression on the raw score's log-odds (Platt scaling, two
parameters, strictly increasing, so no ties) where they are few (lines: a few
hundred). NumPy only, so the serving core can apply it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from .metadata_json import read_optional_prop, read_versioned_json

METADATA_KEY = "confidence_calibration"


class CalibrationError(ValueError):
    pass


@dataclass(frozen=True)
class MonotoneMap:
    """Piecewise-linear non-decreasing map from a raw score to a probability."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self):
        if not self.x or len(self.x) != len(self.y):
            raise CalibrationError("a calibration map needs as many outputs as knots, at least one")
        if any(b < a for a, b in zip(self.x, self.x[1:])) or any(b < a for a, b in zip(self.y, self.y[1:])):
            raise CalibrationError("a calibration map must be non-decreasing")
        if not all(0.0 <= v <= 1.0 for v in self.y):
            raise CalibrationError("calibrated confidences must lie in [0, 1]")

    def __call__(self, raw):
        return np.interp(raw, self._knots[0], self._knots[1])

    @functools.cached_property
    def _knots(self) -> tuple[np.ndarray, np.ndarray]:
        """The knots as arrays, made once: np.interp would convert the tuples on every call."""
        return np.array(self.x, np.float64), np.array(self.y, np.float64)

    def to_dict(self) -> dict:
        return {"x": [round(v, 6) for v in self.x], "y": [round(v, 6) for v in self.y]}

    @classmethod
    def from_dict(cls, data: dict) -> MonotoneMap:
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]))


@dataclass(frozen=True)
class ConfidenceCalibration:
    """The two maps a model carries, and where they were fitted (for the model card)."""

    character: MonotoneMap
    line: MonotoneMap
    fitted_on: str = ""

    def to_json(self) -> str:
        return json.dumps({"version": 1, "character": self.character.to_dict(), "line": self.line.to_dict(),
                           "fitted_on": self.fitted_on}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ConfidenceCalibration:
        return read_versioned_json(text, METADATA_KEY, "calibration", CalibrationError, lambda data: cls(
            MonotoneMap.from_dict(data["character"]), MonotoneMap.from_dict(data["line"]),
            data.get("fitted_on", "")))

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ConfidenceCalibration | None:
        """The calibration a model's metadata carries, or None for an uncalibrated model."""
        return read_optional_prop(props, METADATA_KEY, cls.from_json)


# -- fitting ----------------------------------------------------------------


def _pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``values`` (in order)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.tolist(), weights.tolist()):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(c, m) for m, _, c in blocks])


def fit_monotone_map(raw: np.ndarray, outcome: np.ndarray, bins: int = 20, min_count: int = 30) -> MonotoneMap:
    """Binned isotonic regression of a 0/1 ``outcome`` on ``raw``.

    Bins: equal-count ones (so the crowded top is resolved) cut again at every
    0.1 of the score (so the sparse, low tail where the errors are gets knots of
    its own), each merged into the next until it holds ``min_count`` examples.
    Each bin's mean score and outcome rate is a knot; rates are made
    non-decreasing by pooling adjacent violators.
    """
    raw = np.asarray(raw, np.float64)
    outcome = np.asarray(outcome, np.float64)
    if raw.size == 0:
        raise CalibrationError("nothing to calibrate on")
    edges = np.unique(np.concatenate([np.quantile(raw, np.linspace(0, 1, bins + 1)[1:-1]), np.linspace(0.1, 0.9, 9)]))
    index = np.searchsorted(edges, raw, side="right")
    groups: list[np.ndarray] = []
    pending = np.zeros(0, int)
    for b in range(len(edges) + 1):
        pending = np.concatenate([pending, np.flatnonzero(index == b)])
        if pending.size >= min_count:
            groups.append(pending)
            pending = np.zeros(0, int)
    if pending.size:
        if groups:
            groups[-1] = np.concatenate([groups[-1], pending])
        else:
            groups.append(pending)
    x = np.array([raw[g].mean() for g in groups])
    rate = np.array([outcome[g].mean() for g in groups])
    y = _pool_adjacent_violators(rate, np.array([g.size for g in groups], np.float64))
    keep = np.concatenate([[True], np.diff(x) > 0])
    return MonotoneMap(tuple(x[keep].tolist()), tuple(np.clip(y[keep], 0, 1).tolist()))


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def maximise_by_newton(objective, derivatives, start: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Maximise a concave ``objective`` by Newton's method with step halving: ``derivatives(w)`` gives its gradient
    and the negated Hessian at ``w``. Stops when a step gains less than 1e-10 (or after ``iterations``)."""
    weights = np.asarray(start, np.float64)
    current = objective(weights)
    for _ in range(iterations):
        gradient, curvature = derivatives(weights)
        step = np.linalg.solve(curvature + 1e-9 * np.eye(len(weights)), gradient)
        size = 1.0
        while size > 1e-6 and objective(weights + size * step) < current:
            size /= 2
        weights = weights + size * step
        improved = objective(weights)
        if improved - current < 1e-10:
            break
        current = improved
    return weights


def fit_logistic_map(raw: np.ndarray, outcome: np.ndarray, knots: int = 48) -> MonotoneMap:
    """Platt scaling: P(outcome) = sigmoid(a * logit(raw) + b), tabulated at quantiles of ``raw``.

    Fitted by Newton's method with step halving on the log-likelihood. Refuses
    a score that does not rise with the outcome (a <= 0): it carries no usable signal.
    """
    raw = np.asarray(raw, np.float64)
    outcome = np.asarray(outcome, np.float64)
    if raw.size < 2 or outcome.min() == outcome.max():
        raise CalibrationError("a logistic calibration needs examples of both outcomes")
    features = np.stack([_log_odds(raw), np.ones_like(raw)], axis=1)

    def log_likelihood(w: np.ndarray) -> float:
        p = np.clip(_sigmoid(features @ w), 1e-12, 1 - 1e-12)
        return float(np.sum(outcome * np.log(p) + (1 - outcome) * np.log(1 - p)))

    def derivatives(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(features @ w)
        return features.T @ (outcome - p), features.T @ (features * (p * (1 - p))[:, None])

    weights = maximise_by_newton(log_likelihood, derivatives, np.array([1.0, 0.0]))
    if weights[0] <= 0:
        raise CalibrationError("the raw score does not rise with the outcome; nothing to calibrate")
    x = np.unique(np.concatenate([[0.0, 1.0], np.quantile(raw, np.linspace(0, 1, knots))]))
    y = _sigmoid(weights[0] * _log_odds(x) + weights[1])
    return MonotoneMap(tuple(x.tolist()), tuple(np.maximum.accumulate(y).tolist()))


# -- measuring ----------------------------------------------------------------


def reliability(confidence: np.ndarray, outcome: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width confidence bins: count, mean confidence and observed rate of each non-empty one."""
    confidence = np.asarray(confidence, np.float64)
    outcome = np.asarray(outcome, np.float64)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append({"low": b / bins, "high": (b + 1) / bins, "count": int(mask.sum()),
                         "confidence": float(confidence[mask].mean()), "observed": float(outcome[mask].mean())})
    return rows


def expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean gap between confidence and observed rate over equal-width bins."""
    rows = reliability(confidence, outcome, bins)
    total = sum(r["count"] for r in rows)
    return sum(r["count"] * abs(r["confidence"] - r["observed"]) for r in rows) / max(total, 1)


def error_share_of_lowest(confidence: np.ndarray, errors: np.ndarray, fraction: float = 0.1) -> float:
    """Share of all character errors held by the ``fraction`` of lines with the lowest confidence.

    Ties are broken by line order, not by errors, so equal confidences earn nothing.
    Random order scores ``fraction``; :func:`best_error_share` is the ceiling.
    """
    errors = np.asarray(errors, np.float64)
    if errors.sum() == 0:
        return float("nan")
    lowest = np.argsort(np.asarray(confidence, np.float64), kind="stable")[: round(fraction * len(errors))]
    return float(errors[lowest].sum() / errors.sum())


def best_error_share(errors: np.ndarray, fraction: float = 0.1) -> float:
    """The same share for a perfect ranking (most errors first): what no confidence can beat."""
    return error_share_of_lowest(-np.asarray(errors, np.float64), errors, fraction)
