"""What machine a measurement was taken on: training runs record it, and so do the benches (``bench``).

Standard library only, so that anything may import it without TensorFlow, PyTorch or onnxruntime.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str | None:
    """The processor's name where Linux tells it: runs on machines of one size may still differ in speed."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_description() -> str:
    """One line for a run's state and reports, e.g. "x86_64 (AMD EPYC 7B13), 2 CPU cores, Linux (3.11.9)"."""
    cpu = cpu_model()
    return (f"{platform.machine()}{f' ({cpu})' if cpu else ''}, {os.cpu_count()} CPU cores, "
            f"{platform.system()} ({platform.python_version()})")
