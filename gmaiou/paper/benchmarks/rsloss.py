"""``gmaiou-paper bench rsloss``: the Rank & Sort loss against the focal loss, forward + backward.

GmaYOLACT classifies with the RS loss (:func:`gmaiou.losses.rank_sort_loss`) over every
anchor x class logit of a batch: at COCO scale ``M`` is about 8.2 million (8 images of 550
pixels, 19,248 anchors, 80 classes, less the ignored anchors) with a few hundred positives.
Three losses are timed on the same logits, forward and backward (the gradient of the
scalar loss with respect to the logits):

* ``rank_sort``: :func:`~gmaiou.losses.rank_sort_loss`, the sums over negatives
  by bins between the positives' band edges (no ``[P, N]`` matrix, no pass per positive);
* ``rank_sort_loop``: :func:`gmaiou.losses._rank_sort_loss_loop_reference`, the
  positive-by-positive form it replaces (timed once, and by default only where
  ``M <= 4 million``: at 8.2 million it takes tens of seconds; ``--reference`` times it
  everywhere);
* ``focal``: :func:`torchvision.ops.sigmoid_focal_loss` (α 0.25, γ 2, summed), the
  loss RS replaces, as the yardstick: the record states ``rank_sort / focal``.

The logits imitate early training: negatives ``N(-4, 1)``, positives ``N(-1, 1.5)``
(almost every negative lies within reach of some positive, the RS loss's worst case),
IoU targets ``U(0.3, 1)``, the positives at random places. Times are the best of
``repeats`` runs after ``warmup`` (the loop: one run), on ``--threads`` torch threads (1
by default). Where the loop ran, the record also holds the largest difference of the two
RS implementations in loss and gradient. The goal: ``rank_sort / focal <= 15`` at
``M = 2 million``, ``P = 400`` on one thread.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gmaiou.paper.benchmarks import device_name, timing_record_path, torch_threads, write_outputs

__all__ = [
    "GOAL",
    "LOOP_MAX_ELEMENTS",
    "markdown_table",
    "register",
    "run",
    "run_rsloss_benchmark",
]

#: The goal: RS forward + backward at most ``max_ratio`` x focal at this size, one thread.
GOAL: dict[str, Any] = {"elements": 2_000_000, "positives": 400, "max_ratio": 15.0}
#: Largest ``M`` at which the positive-by-positive loop is timed unless asked for.
LOOP_MAX_ELEMENTS = 4_000_000

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _case(
    elements: int, positives: int, seed: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``[M]`` float32 logits, IoU targets (at positives) and the bool positive mask."""
    g = torch.Generator().manual_seed(seed)
    positive = torch.zeros(elements, dtype=torch.bool)
    positive[torch.randperm(elements, generator=g)[:positives]] = True
    logits = torch.randn(elements, generator=g) - 4.0
    logits = torch.where(positive, torch.randn(elements, generator=g) * 1.5 - 1.0, logits)
    iou = torch.rand(elements, generator=g) * 0.7 + 0.3
    targets = torch.where(positive, iou, torch.zeros_like(iou))
    return logits.to(device), targets.to(device), positive.to(device)


def _losses(delta: float) -> dict[str, LossFn]:
    import torchvision

    from gmaiou.losses import _rank_sort_loss_loop_reference, rank_sort_loss

    def rank_sort(x: Tensor, targets: Tensor, positive: Tensor) -> Tensor:
        return rank_sort_loss(x, targets, positive, delta)[0]

    def rank_sort_loop(x: Tensor, targets: Tensor, positive: Tensor) -> Tensor:
        return _rank_sort_loss_loop_reference(x, targets, positive, delta)[0]

    def focal(x: Tensor, targets: Tensor, positive: Tensor) -> Tensor:
        return torchvision.ops.sigmoid_focal_loss(x, positive.to(x.dtype), reduction="sum")

    return {"rank_sort": rank_sort, "rank_sort_loop": rank_sort_loop, "focal": focal}


def _forward_backward(
    fn: LossFn, logits: Tensor, targets: Tensor, positive: Tensor, device: torch.device
) -> tuple[float, Tensor, Tensor]:
    """Seconds of one forward + backward, the loss and the logits' gradient."""
    x = logits.clone().requires_grad_(True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss = fn(x, targets, positive)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, loss.detach(), x.grad


def run_rsloss_benchmark(
    elements: Sequence[int] = (2_000_000, 8_200_000),
    positives: Sequence[int] = (400, 500),
    repeats: int = 3,
    warmup: int = 1,
    reference: bool = False,
    threads: int | None = 1,
    device: torch.device | str = "cpu",
    delta: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the three losses at every ``(M, P)`` of ``elements x positives``; see the module docstring."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for m, p in itertools.product(elements, positives):
        if not 0 < p <= m:
            raise ValueError(f"need 0 < positives <= elements, got P = {p}, M = {m}")
    device = torch.device(device)
    fns = _losses(delta)
    rows = []
    with torch_threads(threads):
        name_of_device = device_name(device)  # with the thread count used
        for m, p in itertools.product(elements, positives):
            logits, targets, positive = _case(m, p, seed, device)
            ms: dict[str, float | None] = {}
            results: dict[str, tuple[Tensor, Tensor]] = {}
            for name, fn in fns.items():
                if name == "rank_sort_loop" and not (reference or m <= LOOP_MAX_ELEMENTS):
                    ms[name] = None
                    continue
                runs = 1 if name == "rank_sort_loop" else warmup + repeats
                times = []
                for r in range(runs):
                    seconds, loss, grad = _forward_backward(fn, logits, targets, positive, device)
                    if name == "rank_sort_loop" or r >= warmup:
                        times.append(seconds)
                results[name] = (loss, grad)
                ms[name] = 1e3 * min(times)
            loop_ms = ms["rank_sort_loop"]
            diff = None
            if "rank_sort_loop" in results:
                (a, ga), (b, gb) = results["rank_sort"], results["rank_sort_loop"]
                diff = {"loss": float((a - b).abs()), "grad": float((ga - gb).abs().max())}
            rows.append(
                {
                    "elements": m,
                    "positives": p,
                    "ms": ms,
                    "rank_sort_over_focal": ms["rank_sort"] / ms["focal"],
                    "loop_over_focal": None if loop_ms is None else loop_ms / ms["focal"],
                    "loop_over_rank_sort": None if loop_ms is None else loop_ms / ms["rank_sort"],
                    "max_abs_diff_to_loop": diff,
                }
            )
    goal_row = next(
        (
            r
            for r in rows
            if (r["elements"], r["positives"]) == (GOAL["elements"], GOAL["positives"])
        ),
        None,
    )
    goal = dict(GOAL)
    goal["ratio"] = None if goal_row is None else goal_row["rank_sort_over_focal"]
    goal["met"] = (
        None if goal_row is None else goal_row["rank_sort_over_focal"] <= GOAL["max_ratio"]
    )
    return {
        "benchmark": "rsloss",
        "device": name_of_device,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "delta": delta,
        "seed": seed,
        "rows": rows,
        "goal": goal,
    }


def markdown_table(record: dict[str, Any]) -> str:
    """The record as a Markdown table (one row per ``(M, P)``) with the goal's sentence."""

    def cell(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    lines = [
        f"Rank & Sort loss vs focal loss, forward + backward over M logits with P positives; "
        f"{record['device']}, torch {record['torch']}; best of {record['repeats']} runs "
        f"(the loop: one run; – not timed), δ {record['delta']}.",
        "",
        "| M | P | RS (ms) | RS loop (ms) | focal (ms) | RS / focal | loop / focal | loop / RS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        ms = r["ms"]
        lines.append(
            f"| {r['elements']:,} | {r['positives']} | {ms['rank_sort']:.1f} | "
            f"{cell(ms['rank_sort_loop'], '.0f')} | {ms['focal']:.1f} | "
            f"{r['rank_sort_over_focal']:.2f} | {cell(r['loop_over_focal'], '.1f')} | "
            f"{cell(r['loop_over_rank_sort'], '.1f')} |"
        )
    goal = record["goal"]
    lines.append("")
    if goal["ratio"] is None:
        lines.append(
            f"Goal RS / focal <= {goal['max_ratio']:g} at M = {goal['elements']:,}, "
            f"P = {goal['positives']}: not timed."
        )
    else:
        lines.append(
            f"Goal RS / focal <= {goal['max_ratio']:g} at M = {goal['elements']:,}, "
            f"P = {goal['positives']}: {goal['ratio']:.2f}, "
            f"{'met' if goal['met'] else 'not met'}."
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    record = run_rsloss_benchmark(
        elements=args.elements,
        positives=args.positives,
        repeats=args.repeats,
        warmup=args.warmup,
        reference=args.reference,
        threads=args.threads,
        device=args.device,
        seed=args.seed,
    )
    out = args.out if args.out is not None else timing_record_path("rsloss", args.device)
    write_outputs(out, record, markdown_table(record))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rsloss",
        help="Rank & Sort loss (binned and positive-by-positive) vs focal loss, forward + backward",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--elements",
        type=int,
        nargs="+",
        default=[2_000_000, 8_200_000],
        help="logits M (default 2000000 8200000)",
    )
    p.add_argument(
        "--positives", type=int, nargs="+", default=[400, 500], help="positives P (default 400 500)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs, the best kept (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument(
        "--reference",
        action="store_true",
        help=f"time the positive-by-positive loop at every M, not only M <= {LOOP_MAX_ELEMENTS:,}",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default figures/timings/<bench>_<cpu|cuda>.json); the Markdown table goes next to it (.md)",
    )
    p.set_defaults(func=run)
