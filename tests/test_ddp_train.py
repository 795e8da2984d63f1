"""DistributedDataParallel: ``torchrun --nproc_per_node 2 -m medsr train`` on CPU with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from medsr.runtime.checkpoint import read_meta
from tests.helpers.train import tiny_overrides, write_tiny_set

pytestmark = pytest.mark.slow  # torchrun: two processes


def test_ddp_train_two_gloo_processes_keep_identical_weights(tmp_path: Path) -> None:
    assert dist.is_available() and dist.is_gloo_available()
    manifest = write_tiny_set(tmp_path / "data", n_train=3)
    config = tmp_path / "tiny.yaml"
    config.write_text("train: {device: cpu}\n")
    sets = [arg for item in tiny_overrides(manifest, steps=3, model="shuffle3d") for arg in ("--set", item)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "medsr", "train", str(config), "-o", str(tmp_path / "run"), "--no-progress", *sets,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 3 steps") == 1  # only rank 0 reports
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    # the ranks drew different patches, so only gradient all-reduce can keep their weights equal
    assert summary["max_weight_difference_across_ranks"] == 0.0
    assert read_meta(tmp_path / "run" / "last.safetensors")["step"] == 3
