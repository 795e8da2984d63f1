"""Slice-axis-spanning sliding-window prediction, shared by ``medsr infer --model`` and training validation.

MONAI's ``sliding_window_inference`` runs in-plane windows that span the whole slice axis; each window
carries a halo of real context as wide as the network's receptive field, so tiles agree with one
whole-volume pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


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
