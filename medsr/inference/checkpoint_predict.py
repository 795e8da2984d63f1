"""``model_upscale``: upscale a volume with a checkpoint from ``medsr train`` (``medsr infer --model``).

The thick-slice axis is moved last (the models' convention), intensities are normalised as the
checkpoint says, :func:`medsr.runtime.sliding.predict_slices` runs in-plane windows that span the whole
slice axis (memory grows with window area times output slices, not with the volume), the intensities
are mapped back to the input's units, the axis is moved back, and the output grid and affine come from
:func:`medsr.geometry.upscaled_grid` (``sliding_window_inference`` would copy the input's metadata).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError, MedsrWarning
from medsr.io.volume import affine_of, spatial_shape, with_grid
from medsr.profiles import SliceProfile
from medsr.runtime.checkpoint import load_trained
from medsr.runtime.device import resolve_device
from medsr.runtime.normalise import denormalise, intensity_map, normalise
from medsr.runtime.sliding import predict_slices

#: Factors this much (relative) outside a checkpoint's trained range are still accepted.
FACTOR_TOLERANCE = 0.05


def check_factor(meta: dict[str, Any], factor: float, source: Path) -> None:
    """Refuse a factor outside the checkpoint's trained range (with a small tolerance)."""
    lo, hi = (float(v) for v in meta.get("factor_range", (1.0, math.inf)))
    if not lo * (1 - FACTOR_TOLERANCE) <= factor <= hi * (1 + FACTOR_TOLERANCE):
        raise MedsrError(
            f"{source.name} was trained for factors {lo:.3g} to {hi:.3g} (slice spacing over target spacing); "
            f"factor {factor:.3g} is outside: pass --factor or --spacing within that range, or train a model "
            "with a wider simulation.spacing_range"
        )


def model_upscale(
    volume: MetaTensor,
    model: Path,
    *,
    axis: int,
    factor: float,
    slice_profile: SliceProfile,
    device: str = "auto",
    progress: bool = False,
    roi_size: Sequence[int] | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
) -> tuple[MetaTensor, dict[str, Any]]:
    """Upscale ``volume`` (C, X, Y, Z) by ``factor`` along ``axis`` with a trained checkpoint.

    ``slice_profile`` gives the thickness checked against the checkpoint's trained thickness/spacing
    range (a warning outside it). Window settings default to the checkpoint's ``inference`` config (the fields of
    :class:`medsr.inference.options.ModelOptions`).

    Returns the MetaTensor on :func:`medsr.geometry.upscaled_grid` (input units) and facts for the sidecar.
    """
    start = time.perf_counter()
    path = Path(model)
    net, meta = load_trained(path)
    check_factor(meta, factor, path)
    affine = affine_of(volume)
    shape = spatial_shape(volume)
    _check_thickness(meta, slice_profile.thickness_mm / float(geometry.voxel_sizes(affine)[axis]), path)
    shape_out, affine_out = geometry.upscaled_grid(shape, affine, axis, factor)
    n_in, n_out = shape[axis], shape_out[axis]
    positions = torch.as_tensor(
        geometry.output_to_input_index(np.arange(n_out), n_in, n_out), dtype=torch.float32
    )
    window = dict(meta.get("config", {}).get("inference", {}))
    dev = resolve_device(device)
    net.to(dev)
    offset, scale = intensity_map(meta["normalisation"], volume)
    channels = []
    for channel in volume.as_subclass(torch.Tensor).float():
        moved = normalise(torch.movedim(channel, axis, -1), offset, scale)
        pred = predict_slices(
            net,
            moved,
            positions,
            roi_size=roi_size or window.get("roi_size", (96, 96)),
            overlap=overlap if overlap is not None else window.get("overlap", 0.25),
            sw_batch_size=sw_batch_size or window.get("sw_batch_size", 1),
            device=dev,
            progress=progress,
        )
        channels.append(torch.movedim(denormalise(pred, offset, scale), -1, axis))
    out = with_grid(volume, torch.stack(channels), affine_out)
    facts = {
        "checkpoint": str(path),
        "architecture": meta["architecture"],
        "checkpoint_step": meta.get("step"),
        "checkpoint_factor_range": meta.get("factor_range"),
        "intensity_offset": offset,
        "intensity_scale": scale,
        "device": str(dev),
        "inference_seconds": round(time.perf_counter() - start, 3),
    }
    return out, facts


def _check_thickness(meta: dict[str, Any], ratio: float, source: Path) -> None:
    lo, hi = (float(v) for v in meta.get("thickness_ratio_range", (0.0, math.inf)))
    if not lo * 0.8 <= ratio <= hi * 1.25:
        warnings.warn(
            f"{source.name} was trained on slice thickness/spacing {lo:.2g}-{hi:.2g}; this scan's is {ratio:.2g}, "
            "results may be less sharp or show artefacts",
            MedsrWarning,
            stacklevel=3,
        )
