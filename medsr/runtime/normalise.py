"""Intensity normalisation shared by training and inference, stored in every checkpoint.

A network sees ``(x - offset) / scale``; its output is mapped back with ``y * scale + offset`` so a
prediction is in the input's units (HU for CT). ``offset`` and ``scale`` come from

* ``percentile``: the volume's own P``lower`` and P``upper`` (offset = P_lower, scale = P_upper -
  P_lower), measured on the whole volume: the HR volume in training, the thick-slice input at
  inference (the two agree closely: slice averaging barely moves robust percentiles);
* ``fixed``: constants, e.g. offset -1000, scale 2000 for CT in HU;
* ``none``: offset 0, scale 1.

:func:`robust_range` is the one robust intensity range in medsr: normalisation, selfsup, the metrics'
data range and the figures' display window all take their percentiles with it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medsr.errors import MedsrError

#: Percentiles are taken on at most this many voxels (an even stride through the volume).
MAX_STAT_VOXELS = 4_000_000


def robust_range(
    values: np.ndarray | torch.Tensor,
    percentiles: tuple[float, float] = (0.5, 99.5),
    *,
    where: np.ndarray | None = None,
    max_voxels: int | None = MAX_STAT_VOXELS,
) -> tuple[float, float]:
    """Low and high ``percentiles`` of the finite voxels of ``values`` (any shape), computed in float64.

    ``where`` (a boolean array shaped like ``values``) restricts the voxels; at most ``max_voxels`` of them
    are used, an even stride through them (None: all, as the reported metrics need). The range may be
    empty (high == low): what a flat volume means is each caller's choice.
    """
    flat = values[where] if where is not None else values.reshape(-1)
    if max_voxels is not None and flat.shape[0] > max_voxels:
        flat = flat[:: math.ceil(flat.shape[0] / max_voxels)]
    if isinstance(flat, torch.Tensor):
        flat = flat.detach().cpu().double().numpy()
    sample = np.asarray(flat, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise MedsrError(
            "no finite voxels to take the intensity range from: the volume is all NaN or inf, or the mask "
            "or overlap is empty"
        )
    lo, hi = np.percentile(sample, percentiles)
    return float(lo), float(hi)


def intensity_map(settings: dict[str, Any], data: torch.Tensor) -> tuple[float, float]:
    """(offset, scale) for ``data`` under ``settings`` (the normalisation config as a dict)."""
    mode = settings.get("mode", "none")
    if mode == "none":
        return 0.0, 1.0
    if mode == "fixed":
        return float(settings["offset"]), float(settings["scale"])
    if mode != "percentile":
        raise MedsrError(f"normalisation mode {mode!r} is not one of percentile, fixed, none")
    lo, hi = robust_range(data, (float(settings["lower"]), float(settings["upper"])))
    scale = hi - lo
    if not scale > 0:  # a (nearly) constant volume: keep its level, scale by its largest magnitude
        smallest, largest = robust_range(data, (0.0, 100.0))
        scale = max(abs(smallest), abs(largest), 1.0)
    return lo, scale


def normalise(x: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """``(x - offset) / scale``."""
    return (x - offset) / scale


def denormalise(y: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """``y * scale + offset`` (the inverse of :func:`normalise`)."""
    return y * scale + offset
