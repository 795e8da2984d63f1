"""``model_upscale``: upscale a volume with a checkpoint from ``medsr train`` (``medsr infer --model``).

The thick-slice axis is moved last (the models' convention), intensities are normalised as the
checkpoint says, MONAI's ``sliding_window_inference`` runs in-plane windows that span the whole slice
axis (memory grows with window area times output slices, not with the volume), the intensities are
mapped back to the input's units, the axis is moved back, and the output grid and affine come from
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
from torch import nn

from medsr import geometry
from medsr.errors import MedsrError, MedsrWarning
from medsr.io.volume import affine_of, spatial_shape, with_grid
from medsr.runtime.device import resolve_device
from medsr.training.checkpoint import build_model, read_checkpoint, read_meta
from medsr.training.normalise import denormalise, intensity_map, normalise

#: Factors this much (relative) outside a checkpoint's trained range are still accepted.
FACTOR_TOLERANCE = 0.05
#: Learner options ``medsr infer`` passes that only self-supervision uses.
_SELFSUP_ONLY = ("budget_s", "steps", "save_model")


def load_trained(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint meta) of a ``kind: trained`` checkpoint."""
    path = Path(path)
    meta = read_meta(path)
    if meta["kind"] != "trained":
        raise MedsrError(
            f"{path} is a {meta['kind']!r} checkpoint (a per-scan self-supervised network); medsr infer --model "
            "applies 'trained' checkpoints written by medsr train"
        )
    tensors, meta = read_checkpoint(path)
    return build_model(meta, tensors, path), meta


def check_factor(meta: dict[str, Any], factor: float, source: Path) -> None:
    """Refuse a factor outside the checkpoint's trained range (with a small tolerance)."""
    lo, hi = (float(v) for v in meta.get("factor_range", (1.0, math.inf)))
    if not lo * (1 - FACTOR_TOLERANCE) <= factor <= hi * (1 + FACTOR_TOLERANCE):
        raise MedsrError(
            f"{source.name} was trained for factors {lo:.3g} to {hi:.3g} (slice spacing over target spacing); "
            f"factor {factor:.3g} is outside: pass --factor or --spacing within that range, or train a model "
            "with a wider simulation.spacing_range"
        )


def predict_slices(
    model: nn.Module,
    lr: torch.Tensor,
    positions: torch.Tensor,
    *,
    roi_size: Sequence[int] = (96, 96),
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Run ``model`` on a normalised (X, Y, m) volume, slice axis last; returns (X, Y, n) on the CPU.

    Windows are ``roi_size`` in-plane and span the whole slice axis. ``positions`` (n,) are the
    output slices' float indices into ``m``. Each window is run with a halo of :func:`halo` voxels of
    real context on every in-plane side (clamped at the volume's edge) and cropped back, so tiles
    agree with a single whole-volume pass (no seams; ``overlap`` only adds blending).

    MONAI slides over a zero-stride placeholder on the *output* grid (X, Y, n) and hands each
    window's coordinates to the predictor, which cuts the matching in-plane window from ``lr``: input
    and output windows then have the same size, so no zoom factor (which MONAI rounds when n / m is
    not an integer) is involved.
    """
    from monai.inferers import sliding_window_inference

    device = torch.device(device)
    pos = positions.to(device=device, dtype=torch.float32)
    data = lr.as_subclass(torch.Tensor).float()
    size_x, size_y, _ = data.shape
    roi = (min(int(roi_size[0]), size_x), min(int(roi_size[1]), size_y), pos.numel())
    carrier = torch.zeros(1, dtype=torch.float32).expand(1, 1, size_x, size_y, pos.numel())
    bar = _WindowBar((size_x, size_y), roi[:2], overlap, sw_batch_size) if progress else None

    margin = halo(model)

    def predictor(window: torch.Tensor, coords: list) -> torch.Tensor:
        outs = []
        for c in coords:
            (x0, x1), (y0, y1) = (c[2].start, c[2].stop), (c[3].start, c[3].stop)
            a0, b0 = max(x0 - margin, 0), max(y0 - margin, 0)
            crop = data[a0 : min(x1 + margin, size_x), b0 : min(y1 + margin, size_y)]
            out = model(crop[None, None].to(device), pos)
            outs.append(out[:, :, x0 - a0 : x1 - a0, y0 - b0 : y1 - b0])
        if bar is not None:
            bar.advance()
        return torch.cat(outs)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = sliding_window_inference(
                carrier,
                roi,
                sw_batch_size,
                predictor,
                overlap=overlap,
                mode="constant",
                sw_device=device,
                device=torch.device("cpu"),
                with_coord=True,
            )
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out[0, 0]


def halo(model: nn.Module) -> int:
    """In-plane receptive-field radius (voxels) of a convolutional network: the sum of its kernel radii.

    An upper bound for any stack of (dilated) convolutions with skips, without pooling or attention.
    """
    radius = 0
    for layer in model.modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            radius += max((k - 1) // 2 * d for k, d in zip(layer.kernel_size, layer.dilation, strict=True))
    return radius


def model_upscale(
    volume: MetaTensor,
    model: Path,
    *,
    axis: int,
    factor: float,
    thickness: float | None = None,
    device: str = "auto",
    progress: bool = False,
    roi_size: Sequence[int] | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    seed: int | None = None,
    **selfsup_options: Any,
) -> tuple[MetaTensor, dict[str, Any]]:
    """Upscale ``volume`` (C, X, Y, Z) by ``factor`` along ``axis`` with a trained checkpoint.

    Window settings default to the checkpoint's ``inference`` config. ``seed`` is accepted and unused
    (inference is deterministic); ``budget_s``/``steps``/``save_model`` concern self-supervision only.

    Returns the MetaTensor on :func:`medsr.geometry.upscaled_grid` (input units) and facts for the sidecar.
    """
    unknown = [k for k in selfsup_options if k not in _SELFSUP_ONLY]
    if unknown:
        raise MedsrError(f"model_upscale does not take option(s) {', '.join(unknown)}")
    given = [k for k in _SELFSUP_ONLY if selfsup_options.get(k) is not None]
    if given:
        warnings.warn(
            f"{', '.join(given)} apply to self-supervision; ignored with a trained --model",
            MedsrWarning,
            stacklevel=2,
        )
    start = time.perf_counter()
    path = Path(model)
    net, meta = load_trained(path)
    check_factor(meta, factor, path)
    affine = affine_of(volume)
    shape = spatial_shape(volume)
    if thickness is not None:
        _check_thickness(meta, float(thickness) / float(geometry.voxel_sizes(affine)[axis]), path)
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


class _WindowBar:
    """A rich progress bar counting sliding windows (stderr)."""

    def __init__(self, size: Sequence[int], roi: Sequence[int], overlap: float, batch: int) -> None:
        from rich.console import Console
        from rich.progress import Progress

        total = 1
        for n, r in zip(size, roi, strict=True):
            step = max(int(r * (1 - overlap)), 1)
            total *= 1 if n <= r else math.ceil((n - r) / step) + 1
        self.progress = Progress(console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("model: inference", total=math.ceil(total / batch))
        self.progress.start()

    def advance(self) -> None:
        self.progress.advance(self.task)

    def close(self) -> None:
        self.progress.stop()
