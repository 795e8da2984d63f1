"""Training pairs for self-supervised super-resolution, made from a scan's own in-plane slices.

The in-plane axes of a thick-slice scan are high resolution. Degrading an in-plane slice along one
of them with the through-plane slice profile (FWHM = slice thickness, slab spacing = slice spacing,
see :func:`medsr.transforms.functional.slab_weights`) gives an (LR, HR) pair that looks like the
through-plane problem: LR row ``k`` is centred on HR row ``R * k + (R - 1) / 2``.

The views pairs are cut from: each in-plane slice is degraded along its rows and, with ``both_axes``, along its columns (the two
in-plane array axes). The through-plane planes the network later sees hold anatomy at every angle,
so the slices are also rotated about the slice axis (``rotations``, degrees) and degraded along the
rotated rows and columns: at 45 degrees that adds the two diagonal directions. Rotation happens in
millimetres (non-square pixels stay undistorted) onto a square-pixel canvas that holds the whole
slice; canvas pixels that are not computed from inside the slice are marked invalid and training
patches never touch them (:class:`medsr.inference.selfsup.sampler.PatchSampler`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from medsr.profiles import profile_shapes
from medsr.transforms.functional import DEFAULT_PROFILE, apply_slab_weights, slab_weights


@dataclass
class PairStack:
    """In-plane slices degraded along their first axis.

    Attributes:
        hr: (S, L, W) high-resolution images (float32, normalised intensities), shared between stacks.
        lr: (S, m, W) the images after the slice profile and slab sampling along axis 1; LR row ``k``
            covers HR rows ``offset + R * k`` to ``offset + R * (k + 1) - 1`` (slab 0 starts at ``offset``).
        factor: integer ratio R of HR to LR rows.
        offset: first HR row of slab 0 (0 <= offset < R: the slab grid's phase).
        valid: None (every pixel usable) or (m, W) bool, the same for every image: LR pixel ``(k, j)``
            and its HR rows hold image content only (no padding of a rotated slice reaches them).
    """

    hr: torch.Tensor
    lr: torch.Tensor
    factor: int
    offset: int = 0
    valid: torch.Tensor | None = None


def resample_rows(images: torch.Tensor, n_out: int, chunk: int = 16) -> torch.Tensor:
    """Resample (S, L, W) to (S, n_out, W) along L (cubic, antialiased when shrinking; same extent)."""
    out = torch.empty(images.shape[0], n_out, images.shape[2], dtype=torch.float32)
    for s0 in range(0, images.shape[0], chunk):
        block = images[s0 : s0 + chunk, None].float()
        size = (n_out, images.shape[2])
        out[s0 : s0 + chunk] = F.interpolate(
            block, size=size, mode="bicubic", align_corners=False, antialias=True
        )[:, 0]
    return out


def make_stacks(
    images: torch.Tensor,
    row_spacing: float,
    factor: int,
    thickness: float,
    slice_spacing: float,
    phases: bool = True,
    profile: str = DEFAULT_PROFILE,
    valid: torch.Tensor | None = None,
) -> list[PairStack]:
    """Degrade (S, L, W) images along L into (LR, HR) stacks, one per slab-grid phase and profile shape.

    Args:
        images: in-plane slices, L is the axis to degrade, ``row_spacing`` mm apart.
        factor: integer R; the HR rows are resampled to ``slice_spacing / R`` mm when they differ.
        thickness: slice profile FWHM, mm.
        slice_spacing: centre-to-centre distance of LR rows, mm.
        phases: one stack for each slab-grid offset 0..R-1 (each anatomy seen at every phase), else
            offset 0 only. The HR images are shared; LR stacks take about one HR volume in all.
        profile: slice profile shape, ``"gaussian"`` or ``"boxcar"`` (see
            :func:`medsr.transforms.functional.profile_cdf`), or ``"mixed"``: the stacks of both shapes
            (the shape is unknown; the network learns to undo either).
        valid: None, or (L, W) bool marking the pixels of every image that hold content (not padding);
            each stack then marks the LR pixels whose slab or HR rows reach an invalid pixel.
    """
    hr_spacing = slice_spacing / factor
    n_rows = images.shape[1]
    if abs(row_spacing - hr_spacing) > 0.01 * hr_spacing:
        n_rows = max(int(round(n_rows * row_spacing / hr_spacing)), factor)
        images = resample_rows(images, n_rows)
        if valid is not None:
            valid = (resample_rows(valid[None].float(), n_rows)[0] - 1.0).abs() < 1e-3
    hr = images.float().contiguous()  # contiguous: fast patch gathers
    stacks = []
    for shape in profile_shapes(profile):
        for offset in range(factor if phases else 1):
            if n_rows - offset < factor:
                break
            weights = slab_weights(n_rows - offset, hr_spacing, thickness, slice_spacing, shape)
            lr = apply_slab_weights(hr[:, offset:], weights, axis=1).contiguous()
            usable = None if valid is None else _usable(valid[offset:], weights, factor)
            stacks.append(PairStack(hr=hr, lr=lr, factor=factor, offset=offset, valid=usable))
    return stacks


def _usable(valid: torch.Tensor, weights: np.ndarray, factor: int) -> torch.Tensor:
    """(m, W) bool: LR pixels whose slab weights and own HR rows touch only valid HR pixels."""
    invalid = (~valid).float()
    reached = apply_slab_weights(invalid[None], np.abs(weights), axis=1)[0] > 1e-6
    m = weights.shape[0]
    own = invalid[: m * factor].reshape(m, factor, -1).amax(1) > 0
    return ~(reached | own)


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
        factor, thickness, slice_spacing, profile, phases: as in :func:`medsr.inference.selfsup.pairs.make_stacks`.
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
