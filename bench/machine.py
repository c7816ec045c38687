"""What every bench's JSON records beside its figures: the machine it ran on, and where the results go.

A module of its own so that the service benches (``bench.service``, ``bench.jobs``, ...) do not import the
recogniser bench, and with it ``Recognizer`` and ``training.evaluate``, for two names."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from training.machine import cpu_model

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """The machine, as every bench's JSON records it (``training.machine`` is the one place that reads the CPU)."""
    return {"cpu": cpu_model() or "unknown", "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform()}
