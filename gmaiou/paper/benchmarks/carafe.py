"""``gmaiou-paper bench carafe``: CARAFE's reassembly, three implementations, at P3 of a 550 image.

GmaYOLACT's FPN upsamples with CARAFE; the largest upsampling brings P4 (``35 x 35`` at
550) to P3 (``70 x 70``, cropped to 69) with 256 channels, ``k_up = 5``, ``σ = 2``. Three
implementations of the reassembly, the part that differs, are timed on the same random
input and softmax-normalised kernels:

* ``shifted``: :func:`gmaiou.models.carafe.carafe_reassemble_shifted`, 25 shifted
  multiply-adds in Python, differentiated by autograd (the first form; ONNX export);
* ``fused``: ``gmaiou.models.carafe._carafe_reassemble_windows``, a strided window view
  and one ``einsum``, which copies the 25 windows and keeps the copy (the second form);
* ``accumulated``: :func:`gmaiou.models.carafe.carafe_reassemble`, 25 in-place
  multiply-adds forward and backward in an autograd function of its own (in use).

Per implementation: the forward time, the forward + backward time (medians, after
warm-up, alternating between them), the bytes autograd keeps for the backward pass
(the tensors saved by the graph, counted by a ``saved_tensors_hooks``; the same on every
device), the largest difference from ``shifted`` in values and in both gradients (relative to
the largest magnitude), and the peak memory allocated during a forward + backward, beyond
the inputs (CUDA: the allocator's peak; CPU: the running total of torch's CPU
allocations and frees recorded by ``torch.profiler`` with ``profile_memory``). The record
states the device (CPU model and torch's thread count, or the GPU) and writes JSON and a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gmaiou.paper.benchmarks import device_name, timing_record_path, write_outputs

__all__ = ["markdown_table", "register", "run", "run_carafe_benchmark"]

Reassemble = Callable[[Tensor, Tensor, int, int], Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _saved_bytes(fn: Reassemble, x: Tensor, kernels: Tensor, k: int, s: int) -> int:
    """Bytes of the distinct tensors autograd saves for the backward of ``fn``."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, kernels, k, s)
    own_inputs = {x.untyped_storage().data_ptr(), kernels.untyped_storage().data_ptr()}
    return sum(n for (ptr, _), n in seen.items() if ptr not in own_inputs)


def _cpu_peak_bytes(step: Callable[[], Any]) -> int:
    """Peak of torch's CPU allocations minus frees while ``step`` runs (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted(
        (e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0),
        key=lambda e: e["ts"],
    )
    current = peak = 0
    for event in memory:
        current += event["args"]["Bytes"]
        peak = max(peak, current)
    return peak


def _time(step: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def run_carafe_benchmark(
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    channels: int = 256,
    side: int = 35,
    up_kernel: int = 5,
    scale: int = 2,
    iters: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Time both reassemblies on ``[batch_size, channels, side, side]``; see the module docstring."""
    from gmaiou.models.carafe import (
        _carafe_reassemble_windows,
        carafe_reassemble,
        carafe_reassemble_shifted,
    )

    for name, value in (("batch_size", batch_size), ("channels", channels), ("side", side)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got {iters}, {warmup}")
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch_size, channels, side, side, generator=g).to(device)
    logits = torch.randn(batch_size, up_kernel**2, scale * side, scale * side, generator=g)
    kernels = logits.softmax(dim=1).to(device)
    grad = torch.randn(batch_size, channels, scale * side, scale * side, generator=g).to(device)
    fns: dict[str, Reassemble] = {
        "shifted": carafe_reassemble_shifted,
        "fused": _carafe_reassemble_windows,
        "accumulated": carafe_reassemble,
    }
    xs = {k: x.clone().requires_grad_() for k in fns}
    ks = {k: kernels.clone().requires_grad_() for k in fns}

    def forward(name: str) -> Tensor:
        with torch.no_grad():
            return fns[name](x, kernels, up_kernel, scale)

    def forward_backward(name: str) -> tuple[Tensor, Tensor, Tensor]:
        out = fns[name](xs[name], ks[name], up_kernel, scale)
        gx, gk = torch.autograd.grad(out, (xs[name], ks[name]), grad)
        return out.detach(), gx, gk

    times: dict[str, dict[str, list[float]]] = {
        k: {"forward": [], "forward_backward": []} for k in fns
    }
    for r in range(warmup + iters):
        for name in fns:
            t_f = _time(lambda n=name: forward(n), device)
            t_fb = _time(lambda n=name: forward_backward(n), device)
            if r >= warmup:
                times[name]["forward"].append(t_f)
                times[name]["forward_backward"].append(t_fb)
    reference = forward_backward("shifted")
    results: dict[str, dict[str, Any]] = {}
    for name in fns:
        got = forward_backward(name)
        # Largest difference relative to the largest magnitude of the reference.
        diffs = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, reference)]
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            forward_backward(name)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = _cpu_peak_bytes(lambda n=name: forward_backward(n))
        results[name] = {
            "forward_ms": 1e3 * statistics.median(times[name]["forward"]),
            "forward_backward_ms": 1e3 * statistics.median(times[name]["forward_backward"]),
            "saved_for_backward_mib": _saved_bytes(fns[name], xs[name], ks[name], up_kernel, scale)
            / 2**20,
            "cuda_peak_mib": peak / 2**20 if device.type == "cuda" else None,
            "cpu_peak_mib": None if device.type == "cuda" else peak / 2**20,
            "max_rel_diff": {"output": diffs[0], "grad_input": diffs[1], "grad_kernels": diffs[2]},
        }
    return {
        "benchmark": "carafe",
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "input": [batch_size, channels, side, side],
        "output": [batch_size, channels, scale * side, scale * side],
        "up_kernel": up_kernel,
        "scale": scale,
        "iters": iters,
        "warmup": warmup,
        "results": results,
        # Forward + backward time of shifted over that of each implementation.
        "speedup_forward_backward": {
            name: results["shifted"]["forward_backward_ms"] / r["forward_backward_ms"]
            for name, r in results.items()
        },
    }


def markdown_table(record: dict[str, Any]) -> str:
    """The record as a Markdown table (one row per implementation)."""
    b, c, h, w = record["input"]
    lines = [
        f"CARAFE reassembly at P3 of a 550 image: [{b}, {c}, {h}, {w}] -> "
        f"{record['output'][2]} x {record['output'][3]}, k_up {record['up_kernel']}, "
        f"σ {record['scale']}; {record['device']}, torch {record['torch']}; medians of "
        f"{record['iters']} runs.",
        "",
        "| implementation | forward (ms) | forward + backward (ms) | saved for backward (MiB) "
        f"| {'CUDA' if record['device_type'] == 'cuda' else 'CPU'} peak, forward + backward (MiB) "
        "| max diff / max value (out / grad x / grad K) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in record["results"].items():
        d = r["max_rel_diff"]
        peak = r["cuda_peak_mib"] if r["cuda_peak_mib"] is not None else r["cpu_peak_mib"]
        lines.append(
            f"| {name} | {r['forward_ms']:.1f} | {r['forward_backward_ms']:.1f} | "
            f"{r['saved_for_backward_mib']:.1f} | {peak:.1f} | "
            f"{d['output']:.1e} / {d['grad_input']:.1e} / {d['grad_kernels']:.1e} |"
        )
    speedup = record["speedup_forward_backward"]
    lines += [
        "",
        "Forward + backward speed-up over shifted: "
        + ", ".join(f"{name} {speedup[name]:.2f}x" for name in speedup if name != "shifted")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from gmaiou.devices import resolve_device

    device = resolve_device(args.device)
    record = run_carafe_benchmark(
        device,
        batch_size=args.batch_size,
        channels=args.channels,
        side=args.side,
        iters=args.iters,
        warmup=args.warmup,
        seed=args.seed,
    )
    out = args.out if args.out is not None else timing_record_path("carafe", device)
    write_outputs(out, record, markdown_table(record))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "carafe",
        help="CARAFE reassembly: three implementations' time and memory at P3 of a 550 image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.add_argument("--batch-size", type=int, default=1, help="images (default 1)")
    p.add_argument("--channels", type=int, default=256, help="FPN channels (default 256)")
    p.add_argument("--side", type=int, default=35, help="input side: P4 at 550 is 35 (default)")
    p.add_argument("--iters", type=int, default=5, help="timed runs per implementation")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default figures/timings/carafe_<device>.json); the Markdown table "
        "goes next to it (.md)",
    )
    p.set_defaults(func=run)
