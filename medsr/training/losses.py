"""Training objective and learning-rate schedule.

Loss: mean absolute error on normalised intensities, plus ``ssim_weight * (1 - SSIM)`` (MONAI's 3-D
SSIM, 7-voxel window, data range 1 on the normalised scale) when ``ssim_weight > 0``.

Schedule (a pure function of the step, so a resumed run needs no scheduler state):

* ``cosine``: linear warm-up over ``warmup_steps`` to ``lr``, then cosine decay to ``lr * min_lr_ratio``;
* ``onecycle``: from ``lr / 25`` up to ``lr`` over the first 30 % of the steps, then cosine down to
  ``lr * min_lr_ratio`` (Smith's one-cycle policy, ``warmup_steps`` ignored);
* ``constant``: warm-up, then ``lr``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medsr.training.config import TrainConfig

ONECYCLE_PCT = 0.3
ONECYCLE_DIV = 25.0


class SRLoss(torch.nn.Module):
    """L1 (+ weighted 1 - SSIM) between prediction and target, (B, 1, X, Y, Z) each."""

    def __init__(self, ssim_weight: float = 0.0) -> None:
        super().__init__()
        self.ssim_weight = float(ssim_weight)
        self.ssim = None
        if self.ssim_weight > 0:
            from monai.losses import SSIMLoss

            self.ssim = SSIMLoss(spatial_dims=3, data_range=1.0, win_size=7)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.l1_loss(pred.float(), target.float())
        if self.ssim is not None and min(target.shape[2:]) >= 7:
            loss = loss + self.ssim_weight * self.ssim(pred.float(), target.float())
        return loss


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimisation step ``step`` (0-based)."""
    total = max(cfg.steps, 1)
    low = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "onecycle":
        up = max(int(ONECYCLE_PCT * total), 1)
        if step < up:
            start = cfg.lr / ONECYCLE_DIV
            return start + (cfg.lr - start) * step / up
        return _cosine(step - up, total - up, cfg.lr, low)
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    return _cosine(step - cfg.warmup_steps, total - cfg.warmup_steps, cfg.lr, low)


def _cosine(step: int, length: int, high: float, low: float) -> float:
    frac = min(max(step / max(length, 1), 0.0), 1.0)
    return low + 0.5 * (high - low) * (1.0 + math.cos(math.pi * frac))
