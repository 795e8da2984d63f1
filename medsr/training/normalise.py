"""Intensity normalisation shared by training and inference, stored in every checkpoint.

A network sees ``(x - offset) / scale``; its output is mapped back with ``y * scale + offset`` so a
prediction is in the input's units (HU for CT). ``offset`` and ``scale`` come from

* ``percentile``: the volume's own P``lower`` and P``upper`` (offset = P_lower, scale = P_upper -
  P_lower), measured on the whole volume: the HR volume in training, the thick-slice input at
  inference (the two agree closely: slice averaging barely moves robust percentiles);
* ``fixed``: constants, e.g. offset -1000, scale 2000 for CT in HU;
* ``none``: offset 0, scale 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medsr.errors import MedsrError

#: Percentiles are taken on at most this many voxels (an even stride through the volume).
MAX_STAT_VOXELS = 4_000_000


def intensity_map(settings: dict[str, Any], data: torch.Tensor) -> tuple[float, float]:
    """(offset, scale) for ``data`` under ``settings`` (the normalisation config as a dict)."""
    mode = settings.get("mode", "none")
    if mode == "none":
        return 0.0, 1.0
    if mode == "fixed":
        return float(settings["offset"]), float(settings["scale"])
    if mode != "percentile":
        raise MedsrError(f"normalisation mode {mode!r} is not one of percentile, fixed, none")
    values = data.detach().reshape(-1)
    if values.numel() > MAX_STAT_VOXELS:
        values = values[:: int(np.ceil(values.numel() / MAX_STAT_VOXELS))]
    values_np = values.float().cpu().numpy()
    values_np = values_np[np.isfinite(values_np)]
    if values_np.size == 0:
        raise MedsrError("the volume has no finite voxels to normalise")
    lo, hi = np.percentile(values_np, [float(settings["lower"]), float(settings["upper"])])
    scale = float(hi - lo)
    if not scale > 0:  # a (nearly) constant volume: keep its level, unit scale
        scale = max(float(np.abs(values_np).max()), 1.0)
    return float(lo), scale


def normalise(x: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """``(x - offset) / scale``."""
    return (x - offset) / scale


def denormalise(y: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """``y * scale + offset`` (the inverse of :func:`normalise`)."""
    return y * scale + offset
