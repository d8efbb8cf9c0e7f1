"""Side-by-side speed benchmarks behind ``gmaiou-paper bench``."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = [
    "cpu_name",
    "device_name",
    "timing_record_path",
    "torch_threads",
    "write_outputs",
    "write_record",
]


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


def write_outputs(out: str | Path, record: dict, table: str) -> Path:
    """Write ``record`` as JSON to ``out`` and ``table`` beside it (``.md``), print the table
    and where both went; return the JSON's path."""
    path = write_record(out, record)
    path.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return path


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` (``None``: left as set), restored after."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1 (or None), got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timing_record_path(name: str, device: torch.device | str = "cpu") -> Path:
    """The default record of benchmark ``name`` on ``device``:
    ``figures/timings/<name>_<cpu|cuda>.json``."""
    from gmaiou.paper.paths import timings_dir

    return timings_dir() / f"{name}_{torch.device(device).type}.json"
