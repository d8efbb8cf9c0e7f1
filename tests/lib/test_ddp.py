"""DDP on the CPU: two processes with the gloo backend train a few iterations; the weights end
identical on both ranks and the loss decreases.
Also ``torchrun --nproc_per_node 2 -m gmaiou train`` end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from gmaiou.data.synthetic import ensure_synthetic

CONFIG = "yolact-atss-gmaiou-r18-160"
ITERS = 6

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available in this build",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(
    rank: int, world_size: int, port: int, data_root: str, out: str, result_dir: str
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)  # two processes share the two cores
    from gmaiou.configs import apply_overrides, get_config
    from gmaiou.training.distributed import init_distributed, shutdown_distributed
    from gmaiou.training.trainer import RunOptions, train

    config = apply_overrides(
        get_config(CONFIG),
        {"epochs": 4, "batch_size": 4, "warmup_iters": 1, "lr": 1e-3},  # the recipe's AdamW rate
    )
    ctx = init_distributed("cpu")
    losses: list[float] = []
    options = RunOptions(
        out_dir=Path(out),
        data_root=Path(data_root),
        num_workers=0,
        eval_split=None,
        progress=False,
        max_iters=ITERS,
        ckpt_every=0,
        augment=False,
        overwrite=True,
    )
    try:
        result = train(
            config,
            options,
            ctx=ctx,
            config_name=CONFIG,
            on_iteration=lambda i, logged: losses.append(logged["loss"]),
        )
        assert result.iterations == ITERS
        torch.save(
            {"state": result.model.state_dict(), "losses": losses},
            Path(result_dir) / f"rank{rank}.pt",
        )
    finally:
        shutdown_distributed()


def test_two_gloo_processes_stay_in_sync_and_learn(tmp_path):
    data_root = ensure_synthetic(num_images=10, size=160, progress=False)
    run = tmp_path / "run"
    mp.spawn(
        _worker,
        args=(2, _free_port(), str(data_root), str(run), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    differing = [k for k in r0["state"] if not torch.equal(r0["state"][k], r1["state"][k])]
    assert not differing, f"ranks disagree on {differing[:5]}"
    # Logged losses are all-reduced means: the same on both ranks.
    assert r0["losses"] == pytest.approx(r1["losses"])
    assert len(r0["losses"]) == ITERS
    assert sum(r0["losses"][-2:]) < sum(r0["losses"][:2])
    # Only rank 0 writes the run directory; it records the global batch (2 processes x 2).
    record = json.loads((run / "config.json").read_text())
    assert record["world_size"] == 2 and record["effective_batch_size"] == 4
    assert len((run / "metrics.jsonl").read_text().splitlines()) == ITERS
    assert (run / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    data_root = ensure_synthetic(num_images=10, size=160, progress=False)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "gmaiou",
        "train",
        "--config",
        CONFIG,
        "--data",
        str(data_root),
        "--out",
        str(run),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--max-iters",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after 2 iterations" in proc.stdout
    assert proc.stdout.count("run directory") == 1  # rank 0 alone reports
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert json.loads((run / "eval.json").read_text())["segm"]["AP"] is not None
