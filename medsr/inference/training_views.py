"""The views of a scan that self-supervised training pairs are cut from.

Each in-plane slice is degraded along its rows and, with ``both_axes``, along its columns (the two
in-plane array axes). The through-plane planes the network later sees hold anatomy at every angle,
so the slices are also rotated about the slice axis (``rotations``, degrees) and degraded along the
rotated rows and columns: at 45 degrees that adds the two diagonal directions. Rotation happens in
millimetres (non-square pixels stay undistorted) onto a square-pixel canvas that holds the whole
slice; canvas pixels that are not computed from inside the slice are marked invalid and training
patches never touch them (:class:`medsr.inference.patches.PatchSampler`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from medsr.inference.patches import PairStack, make_stacks

#: At most this many pixels of slices per view (evenly spaced slices are kept beyond): 128 MB float32.
#: With both in-plane axes a view is stored twice (rows and columns contiguous), so the HR images of
#: training take at most 4 x 128 MB whatever the volume size (docs/performance.md, memory).
MAX_SLICE_PIXELS = 2**25
#: The same bound for the canvases of rotated slices (at most about twice a slice's area each).
MAX_ROTATED_PIXELS = 2**25


def rotate_slices(
    images: torch.Tensor, degrees: float, spacing: tuple[float, float], order: int = 3
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Rotate (S, A, B) images about their centre by ``degrees`` in physical space.

    Interpolation is a spline of ``order`` (scipy.ndimage, interpolating: sharp edges stay sharp, which
    matters because the rotated images are training targets).

    Args:
        images: slices whose pixels are ``spacing`` = (mm along A, mm along B).
        degrees: rotation angle.

    Returns:
        (rotated (S, A', B') float32 with zeros outside the slice, valid (A', B') bool: pixels that map
        inside the slice, pixel size in mm = min(spacing) along both axes).
    """
    n, size_a, size_b = images.shape
    pixel = float(min(spacing))
    extent_a, extent_b = size_a * spacing[0], size_b * spacing[1]
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    out_a = max(1, math.ceil((abs(extent_a * c) + abs(extent_b * s)) / pixel - 1e-6))
    out_b = max(1, math.ceil((abs(extent_a * s) + abs(extent_b * c)) / pixel - 1e-6))
    # Output index (p, q) -> input index (a, b), both about the centres, through millimetres.
    matrix = np.array([[c / spacing[0], -s / spacing[0]], [s / spacing[1], c / spacing[1]]]) * pixel
    centre_in = (np.array([size_a, size_b]) - 1) / 2.0
    centre_out = (np.array([out_a, out_b]) - 1) / 2.0
    offset = centre_in - matrix @ centre_out
    source = images.detach().cpu().float().numpy()
    rotated = np.empty((n, out_a, out_b), dtype=np.float32)
    for k in range(n):
        ndimage.affine_transform(
            source[k], matrix, offset, (out_a, out_b), output=rotated[k], order=order, mode="nearest"
        )
    p, q = np.meshgrid(np.arange(out_a), np.arange(out_b), indexing="ij")
    a, b = np.einsum("ij,jpq->ipq", matrix, np.stack([p, q])) + offset[:, None, None]
    tol = 1e-6
    valid = (a >= -tol) & (a <= size_a - 1 + tol) & (b >= -tol) & (b <= size_b - 1 + tol)
    rotated[:, ~valid] = 0.0
    return torch.from_numpy(rotated), torch.from_numpy(valid), pixel


def training_stacks(
    norm: torch.Tensor,
    axis: int,
    sizes: Sequence[float],
    factor: int,
    thickness: float,
    slice_spacing: float,
    profile: str,
    *,
    both_axes: bool = True,
    phases: bool = False,
    rotations: Sequence[float] = (),
) -> list[PairStack]:
    """(LR, HR) stacks from the in-plane slices of ``norm`` (X, Y, Z), degraded along in-plane directions.

    Args:
        axis: the through-plane (slice) axis; ``sizes`` are the voxel sizes in mm of all three axes.
        factor, thickness, slice_spacing, profile, phases: as in :func:`medsr.inference.patches.make_stacks`.
        both_axes: degrade along both in-plane axes (else the first only), also for rotated slices.
        rotations: extra in-plane angles in degrees (0 and 90 are the unrotated slices).
    """
    slices = torch.movedim(norm, axis, 0)  # (n, A, B)
    spacing = tuple(float(sizes[a]) for a in range(3) if a != axis)
    area = slices.shape[1] * slices.shape[2]
    views: list[tuple[torch.Tensor, tuple[float, float], torch.Tensor | None]] = [
        (evenly_spaced(slices, MAX_SLICE_PIXELS // area), spacing, None)
    ]
    for degrees in rotations:
        rotated, valid, pixel = rotate_slices(
            evenly_spaced(slices, _slices_to_rotate(slices, spacing)), degrees, spacing
        )
        views.append((rotated, (pixel, pixel), valid))
    if both_axes:
        views += [
            (images.transpose(1, 2), (mm[1], mm[0]), None if valid is None else valid.T)
            for images, mm, valid in list(views)
        ]
    return [
        stack
        for images, mm, valid in views
        for stack in make_stacks(
            images, mm[0], factor, thickness, slice_spacing, phases, profile, valid=valid
        )
    ]


def evenly_spaced(slices: torch.Tensor, count: int) -> torch.Tensor:
    """(S, A, B) ``slices`` itself, or at most ``count`` (>= 1) evenly spaced ones of them (a copy)."""
    if count >= slices.shape[0]:
        return slices
    keep = torch.linspace(0, slices.shape[0] - 1, max(1, count)).round().long().unique()
    return slices[keep]


def _slices_to_rotate(slices: torch.Tensor, spacing: tuple[float, float]) -> int:
    """How many slices stay within MAX_ROTATED_PIXELS once rotated (a canvas of at most 2x the slice area)."""
    side = math.hypot(slices.shape[1] * spacing[0], slices.shape[2] * spacing[1]) / min(spacing)
    return max(1, min(slices.shape[0], int(MAX_ROTATED_PIXELS // (side * side))))
