"""Apply a 2-D slice network along the through-plane axis, in the two planes that contain it, and fuse.

The volume is processed a few planes at a time (and a plane in tiles along its in-plane axis when
it is very large), so the memory used beyond the input and output arrays stays bounded by
``batch_bytes`` whatever the volume size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.slice_sr2d import SliceSR2d
from medsr.runtime.device import precision_for

#: Plane sets: "a" planes hold the slice axis and the second in-plane axis, "b" planes the first.
PLANE_SETS = {"both": ("a", "b"), "a": ("a",), "b": ("b",)}


def run_network(
    net: SliceSR2d,
    x: torch.Tensor,
    n_out: int,
    device: torch.device,
    amp: bool,
    tile: int | None,
    flips: bool,
) -> torch.Tensor:
    """Upsample (N, 1, n, W) planes to (N, 1, n_out, W) on the CPU, computing on ``device``.

    Args:
        tile: compute in tiles of this many columns (plus the receptive-field halo); None = whole planes.
        flips: also run on the planes flipped along each axis and average the four results.
    """
    width, fold = x.shape[-1], net.fold
    tile = width if tile is None else max(fold, tile - tile % fold)
    # Tiles and halos start on multiples of ``fold``: each tile folds columns as the whole plane would.
    halo = -(-net.halo // fold) * fold if tile < width else 0
    out = torch.empty(x.shape[0], 1, n_out, width, dtype=torch.float32)
    precision = precision_for(device, amp=amp, training=False)  # float32 on CPUs
    variants = ((), (2,), (3,), (2, 3)) if flips else ((),)
    for w0 in range(0, width, tile):
        lo, hi = max(0, w0 - halo), min(width, w0 + tile + halo)
        xt = x[..., lo:hi].to(device, torch.float32)
        if device.type == "cpu":
            xt = xt.contiguous(memory_format=torch.channels_last)
        acc = None
        for dims in variants:
            with precision.autocast():
                y = net(xt.flip(dims) if dims else xt)
            y = (y.flip(dims) if dims else y).float()
            acc = y if acc is None else acc + y
        acc = acc / len(variants)
        if acc.shape[2] != n_out:  # non-integer factor: the network grid is finer than the output grid
            acc = F.interpolate(acc, size=(n_out, acc.shape[3]), mode="bicubic", align_corners=False)
        out[..., w0 : min(width, w0 + tile)] = acc[..., w0 - lo : w0 - lo + min(tile, width - w0)].cpu()
    return out


def batch_plan(net: SliceSR2d, n: int, width: int, batch_bytes: int) -> tuple[int, int | None]:
    """Planes per batch and tile width so that activations stay near ``batch_bytes``."""
    rows = n * net.factor if net.grid == "hr" else n
    widest = max(m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d))  # expanded blocks
    per_column = 4 * (4 * net.head.out_channels + 2 * widest) * rows + 4 * 4 * n * net.factor
    per_plane = per_column * width
    if per_plane <= batch_bytes:
        return max(1, batch_bytes // per_plane), None
    return 1, max(8, batch_bytes // per_column)


def plane_batches(n_planes: int, batch: int) -> Iterator[tuple[int, int]]:
    for p0 in range(0, n_planes, batch):
        yield p0, min(n_planes, p0 + batch)


@torch.no_grad()
def upscale_volume(
    net: SliceSR2d,
    volume: torch.Tensor,
    axis: int,
    n_out: int,
    out: torch.Tensor,
    *,
    planes: str = "both",
    device: torch.device,
    amp: bool = True,
    flips: bool = False,
    batch_bytes: int = 256 * 2**20,
    progress=None,
) -> torch.Tensor:
    """Upscale ``volume`` (X, Y, Z) along ``axis`` into ``out`` (the upscaled shape), averaging plane sets.

    ``out`` is filled in place (float32, same units as ``volume``) and returned. ``progress`` is a
    callable taking the number of planes just finished (or None).
    """
    net.eval()
    v = torch.movedim(volume, axis, 0)  # (n, A, B), a view
    o = torch.movedim(out, axis, 0)  # (n_out, A, B), a view
    n, size_a, size_b = v.shape
    sets = PLANE_SETS[planes]
    for k, which in enumerate(sets):
        n_planes, width = (size_a, size_b) if which == "a" else (size_b, size_a)
        batch, tile = batch_plan(net, n, width, batch_bytes)
        for p0, p1 in plane_batches(n_planes, batch):
            if which == "a":
                x = v[:, p0:p1, :].permute(1, 0, 2)[:, None]  # (p, 1, n, B)
            else:
                x = v[:, :, p0:p1].permute(2, 0, 1)[:, None]  # (p, 1, n, A)
            y = run_network(net, x, n_out, device, amp, tile, flips)[:, 0]
            target = o[:, p0:p1, :] if which == "a" else o[:, :, p0:p1]
            y = y.permute(1, 0, 2) if which == "a" else y.permute(1, 2, 0)
            if k == 0:
                target.copy_(y)
            else:
                target.add_(y)
            if progress is not None:
                progress(p1 - p0)
    if len(sets) > 1:
        out.mul_(1.0 / len(sets))
    return out


def count_planes(shape: tuple[int, int, int], axis: int, planes: str) -> int:
    """How many planes :func:`upscale_volume` processes (for progress bars)."""
    others = [s for i, s in enumerate(shape) if i != axis]
    return sum(others[0] if w == "a" else others[1] for w in PLANE_SETS[planes])


def module_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device
