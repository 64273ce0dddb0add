"""Clipping under torch.distributed, with real torchrun processes and the gloo backend on CPU.

The checks themselves live in ``dist_worker.py`` (one rank); here torchrun starts 2 and 4 ranks
and every rank's verdicts are asserted, with the detail that says which number was off.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("dist_worker.py")
EXPECTED = {
    "ddp_norm_and_clipped_grads",
    "fsdp_norm_2.0",
    "fsdp_norm_inf",
    "fsdp_nan_one_rank_all_skip",
    "zscore_state_identical_after_50_steps",
    "pipeline_group_norm_2.0",
    "pipeline_group_norm_3.0",
    "pipeline_group_norm_inf",
    *(f"fsdp1d_vs_torch_{p}" for p in (2.0, 1.0, 3.0, math.inf)),
}
# dp=2 x tp=2 (FSDP2 + tensor parallelism), HSDP 2 x 2, two meshes, hand-made placements
EXPECTED_4 = {
    *(f"{s}_vs_torch_{p}" for s in ("fsdp_tp", "hsdp") for p in (2.0, 1.0, 3.0, math.inf)),
    "mixed_meshes_2.0",
    "mixed_meshes_inf",
    *(f"placements_{p}" for p in (2.0, 3.0, math.inf)),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_distributed_clipping_equals_single_process(world, tmp_path):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(WORKER), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(world):
        verdicts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        failed = {k: v["detail"] for k, v in verdicts.items() if not v["ok"]}
        assert not failed, f"rank {rank}: {failed}"
        assert set(verdicts) == (EXPECTED | EXPECTED_4 if world == 4 else EXPECTED)


@pytest.mark.slow
def test_conv_trainer_under_torchrun_ddp_matches_one_process(tmp_path):
    """`torchrun --nproc_per_node 2 -m gradclip.sandbox.convolutional ...` (DDP, gloo) = one process."""
    flags = ["small_cnn", "--epochs", "2", "--image-size", "8", "--grad-clip", "1", "--lr", "0.5",
             "--batch-size", "64", "--quiet", "--no-monitor"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "gradclip.sandbox.convolutional", *flags, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={free_port()}", "-m", "gradclip.sandbox.convolutional", *flags,
         "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert sum(one["clipped"]) == sum(two["clipped"]) > 0  # the same steps were clipped
    # float32 sums in another order (gloo all-reduce). At lr 0.5 this run amplifies rounding: in ONE
    # process, two reduction orders of the norm (dots against the foreach kernel; first-step norms
    # 1e-7 apart) end 5.4e-4 apart in the last validation loss, so that is the noise floor here.
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=2e-3)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-3)
