"""Smoke benchmark of ``medsr train`` and of trained-model inference (not a test; see docs/performance.md).

1. Trains ``configs/default.yaml`` on the offline manifest (nilearn's MNI152 tissue maps for training,
   its T1 for validation) for ``--steps`` steps, with optional ``--set`` overrides, and prints the
   validation PSNR/SSIM of the model and of cubic interpolation and the training steps per second.
2. For each 3-D model family (default architecture, untrained weights: speed does not depend on
   them) upscales a 256x256x40 volume to 256x256x160 (x4) with ``model_upscale`` in a fresh process
   and prints output megavoxels per second and the process's peak RSS.

Usage::

    python benchmarks/train_smoke.py --steps 60 --threads 2 \\
        --set train.batch_size=2 --set "data.patch_size=[32,32,48]"
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPE, FACTOR = (256, 256, 40), 4.0


def train_part(steps: int, overrides: list[str], run_dir: Path) -> dict:
    from medsr.training.config import load_config
    from medsr.training.loop import train

    config = load_config(
        REPO / "configs" / "default.yaml",
        [f"train.steps={steps}", f"train.val_every={steps}", "train.log_every=10", *overrides],
    )
    summary = train(config, run_dir, progress=False)
    import csv

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    train_seconds = sum(
        10 / float(r["steps_per_s"]) for r in rows if r["steps_per_s"] and not r["val_psnr"]
    )  # log windows without validation
    timed = 10 * sum(1 for r in rows if r["steps_per_s"] and not r["val_psnr"])
    return {
        "steps": summary["steps"],
        "seconds_total": summary["seconds"],
        "steps_per_s": timed / train_seconds if train_seconds else None,
        **summary["final_validation"],
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB.

    Not ``ru_maxrss``: Linux carries the pre-exec peak into it, and a child forked from a large parent
    would report the parent's memory.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def infer_child(name: str, threads: int) -> None:
    """Runs in a fresh process: time one x4 upscaling, report megavoxels/s and peak RSS (JSON on stdout)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from medsr.inference.checkpoint_predict import model_upscale
    from medsr.inference.slice_profile import resolve_slice_profile
    from medsr.io.volume import make_volume
    from medsr.models import MODELS
    from medsr.runtime.checkpoint import save_checkpoint

    rss_base = peak_rss_mb()
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    data = 100 * (sum(g * g for g in grid) < 0.6) + rng.normal(0, 5, SHAPE)
    volume = make_volume(data.astype(np.float32), np.diag([0.9, 0.9, 4.0, 1.0]))
    profile = resolve_slice_profile(volume, 2, None, None)  # thickness: the slice spacing
    args = {"factor": 4} if name == "shuffle3d" else {}
    meta = {
        "kind": "trained",
        "architecture": name,
        "model_args": args,
        "factor_range": [1.0, 8.0],
        "normalisation": {"mode": "percentile", "lower": 0.5, "upper": 99.5},
        "config": {"inference": {"roi_size": [96, 96], "overlap": 0.0, "sw_batch_size": 1}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "m.safetensors", MODELS[name](**args), meta)
        start = time.perf_counter()
        out, _ = model_upscale(volume, path, axis=2, factor=FACTOR, slice_profile=profile, device="cpu")
        seconds = time.perf_counter() - start
    voxels = int(np.prod(out.shape[1:]))
    peak = peak_rss_mb()
    print(json.dumps({"model": name, "seconds": seconds, "mvox_per_s": voxels / seconds / 1e6,
                      "peak_rss_mb": peak, "rss_after_imports_mb": rss_base, "output_shape": list(out.shape[1:])}))  # fmt: skip


def infer_part(threads: int) -> list[dict]:
    results = []
    for name in ("shuffle3d", "deepresolve3d"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--threads", str(threads)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-infer", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        infer_child(args.child, args.threads)
        return
    import torch

    torch.set_num_threads(args.threads)
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as tmp:
            t = train_part(args.steps, args.overrides, Path(tmp) / "run")
        print(f"training: {t['steps']} steps, {t['steps_per_s']:.3f} steps/s (without validation), "
              f"{t['seconds_total']:.0f} s in all")  # fmt: skip
        print(f"validation (MNI152 T1, whole volume): PSNR {t['val_psnr']:.2f} dB vs cubic {t['val_psnr_cubic']:.2f} dB; "
              f"SSIM {t['val_ssim']:.4f} vs cubic {t['val_ssim_cubic']:.4f}")  # fmt: skip
    if not args.skip_infer:
        print(
            f"| model | {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} -> x{FACTOR:g} | output Mvox/s | peak RSS (MB) | RSS after imports (MB) |"
        )
        print("|---|---|---|---|---|")
        for r in infer_part(args.threads):
            print(f"| {r['model']} | {r['seconds']:.1f} s | {r['mvox_per_s']:.3f} | {r['peak_rss_mb']:.0f} | {r['rss_after_imports_mb']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
