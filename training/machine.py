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


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str] | None:
    """The processor's feature flags where Linux tells them (None elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def native_bf16() -> bool | None:
    """Whether the CPU computes bfloat16 itself (AVX512-BF16 or AMX); None when it cannot be told. Without them
    PyTorch emulates it: on a 2-core AMD EPYC with AVX2 only, a bf16 training step ran over 10x slower than fp32."""
    flags = cpu_flags()
    return None if flags is None else any(flag in flags for flag in NATIVE_BF16_FLAGS)


def machine_description() -> str:
    """One line for a run's state and reports, e.g. "x86_64 (AMD EPYC 7B13), 2 CPU cores, Linux (3.11.9)"."""
    cpu = cpu_model()
    return (f"{platform.machine()}{f' ({cpu})' if cpu else ''}, {os.cpu_count()} CPU cores, "
            f"{platform.system()} ({platform.python_version()})")
