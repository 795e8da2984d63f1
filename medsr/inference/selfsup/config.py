"""What shapes a self-supervised run: :class:`SelfSupConfig` (network, training, inference settings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ARCHITECTURE = "slice_sr2d"


@dataclass(frozen=True)
class SelfSupConfig:
    """Everything that shapes a self-supervised run (defaults chosen by benchmarks/selfsup_quality.py)."""

    features: int = 16
    blocks: int = 6
    expand: int = 4  # wide activation (WDSR): ReLUs act on features * expand channels
    fold: int = 2  # columns folded into channels (space-to-depth along the in-plane axis): 2x cheaper steps
    kernel: tuple[int, int] = (3, 3)
    grid: str = "lr"  # "lr": compute on the LR grid + sub-pixel step; "hr": refine a cubic upsampling
    base: str = "cubic"  # residual on "cubic", "linear" or "none"
    patch: tuple[int, int] = (16, 64)  # LR rows x columns of a training patch
    batch: int = 32
    steps: int = 10000  # default when neither steps nor budget_s is given, together with...
    budget_s: float = 200.0  # ...this time budget: whichever ends first
    lr: float = 2e-3
    edge_mix: float = 0.5  # share of uniform patch sampling (1.0 = uniform, 0.0 = edges only)
    both_axes: bool = True  # degrade along both in-plane axes (else the first only)
    rotations: tuple[float, ...] = (45.0,)  # also in-plane slices rotated by these angles (degrees)
    phases: bool = False  # train on every slab-grid phase (R LR stacks per axis), else phase 0 only
    flips: bool = True  # random flips of training pairs
    match_noise: bool = True  # add noise to training inputs up to the scan's own noise level
    planes: str = "both"  # fuse both plane sets ("both") or use one ("a", "b")
    tta_flips: bool = True  # average four flipped passes at inference (4x inference time)
    schedule: str = "cosine"  # learning rate over training: "cosine" decay or "constant"
    ema: float = 0.0  # average the weights (decay per step) and use the average; 0 = last weights
    amp: bool = True  # mixed precision (medsr.runtime.device.amp_policy; CPUs: bfloat16 training if native)
    percentiles: tuple[float, float] = (0.5, 99.5)
    batch_bytes: int = 256 * 2**20  # activation memory per inference batch

    def model_kwargs(self, factor: int) -> dict[str, Any]:
        return {
            "factor": factor,
            "features": self.features,
            "blocks": self.blocks,
            "kernel": tuple(self.kernel),
            "grid": self.grid,
            "base": self.base,
            "expand": self.expand,
            "fold": self.fold,
        }


def config_with(**changes: Any) -> SelfSupConfig:
    """The default config with some fields changed (for ablations)."""
    return dataclasses.replace(SelfSupConfig(), **changes)
