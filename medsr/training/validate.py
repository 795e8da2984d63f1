"""Validation: whole-volume sliding-window inference on deterministically degraded volumes.

Each validation volume is degraded once, with a seed derived from its name (so every run and every
resumed run sees the same thick-slice input), upscaled back onto its own HR grid by the model and by
cubic interpolation, and both are scored against the HR volume with medsr.runtime.metrics (PSNR
and 3-D SSIM with the robust P0.5-P99.5 range of the HR volume) over the HR slices the thick slices
cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medsr.io.volume import affine_of
from medsr.models.interp import cubic_weights, resample_last
from medsr.runtime import metrics
from medsr.runtime.normalise import denormalise, normalise, robust_range
from medsr.runtime.sliding import predict_slices
from medsr.training.config import Config
from medsr.training.data import slice_positions


def upscale_pair(
    model: nn.Module, pair: dict[str, Any], config: Config, device: torch.device
) -> dict[str, np.ndarray]:
    """Model and cubic predictions of ``pair["lr"]`` on the covered slices of ``pair["hr"]`` (slice axis last)."""
    hr_v, lr_v = pair["hr"], pair["lr"]
    axis = int(lr_v.meta["simulation"]["axis"])
    positions = slice_positions(affine_of(hr_v), affine_of(lr_v), axis, hr_v.shape[axis + 1])
    lr = torch.movedim(lr_v[0].as_subclass(torch.Tensor).float(), axis, -1)
    hr = torch.movedim(hr_v[0].as_subclass(torch.Tensor).float(), axis, -1)
    m = lr.shape[-1]
    covered = (positions >= -0.5) & (positions <= m - 0.5)
    pos = torch.as_tensor(positions[covered], dtype=torch.float32)
    offset, scale = pair["norm"]
    pred = predict_slices(
        model,
        normalise(lr, offset, scale),
        pos,
        roi_size=config.inference.roi_size,
        overlap=config.inference.overlap,
        sw_batch_size=config.inference.sw_batch_size,
        device=device,
    )
    cubic = resample_last(lr, cubic_weights(pos, m))
    return {
        "sr": denormalise(pred, offset, scale).numpy(),
        "cubic": cubic.numpy(),
        "hr": hr[..., torch.as_tensor(covered)].numpy(),
    }


def validate(
    model: nn.Module, pairs: Sequence[dict[str, Any]], config: Config, device: torch.device
) -> dict[str, float]:
    """Mean PSNR/SSIM of the model and of cubic interpolation over the validation pairs."""
    rows = []
    for pair in pairs:
        out = upscale_pair(model, pair, config, device)
        hr = out["hr"]
        lo, hi = robust_range(hr, metrics.PERCENTILES, max_voxels=None)
        span = hi - lo if hi > lo else 1.0
        mask = np.ones(hr.shape, dtype=bool)
        rows.append(
            {
                "val_psnr": metrics.psnr(out["sr"], hr, mask, span),
                "val_psnr_cubic": metrics.psnr(out["cubic"], hr, mask, span),
                "val_ssim": metrics.ssim(out["sr"], hr, mask, span),
                "val_ssim_cubic": metrics.ssim(out["cubic"], hr, mask, span),
            }
        )
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} if rows else {}
