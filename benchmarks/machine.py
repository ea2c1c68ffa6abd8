"""The CPU a benchmark ran on, recorded beside its figures (speed depends on it far more than on the code)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_description() -> dict:
    """The processor's name and PyTorch's view of its vector instructions (``AVX2``, ``AVX512``, ...)."""
    import torch

    name = ""
    if Path("/proc/cpuinfo").is_file():
        name = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), "")
    return {"name": name or platform.processor() or platform.machine(),
            "capability": torch.backends.cpu.get_cpu_capability()}
