"""Side-by-side speed benchmarks behind ``gmaiou-paper bench``."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

__all__ = ["cpu_name", "device_name", "write_record"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU's model name with torch's thread count, for the record."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def write_record(path: str | Path, record: dict) -> Path:
    """Write a benchmark's results as indented JSON (creating the folder); return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return out
