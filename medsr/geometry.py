"""Pure affine math for through-plane super-resolution (numpy only).

Conventions
-----------
An affine is a 4x4 float64 matrix mapping voxel indices (i, j, k) to world millimetres
(RAS+ inside medsr). Voxel ``i`` covers indices ``[i - 0.5, i + 0.5]``.

Upscaling along one axis by factor ``s`` (docs/geometry.md): the output spans the same
physical extent as the input, has ``round(n * s)`` voxels, and output voxel ``i`` sits at
input index ``(i + 0.5) / s_eff - 0.5`` with ``s_eff = round(n * s) / n`` (equal to ``s``
whenever ``n * s`` is an integer).

Thick-slice simulation with slab spacing ``r`` HR voxels: slab 0 starts at the HR volume's
edge, LR slice ``k`` is centred on HR index ``r * k + (r - 1) / 2`` and there are
``floor(n / r)`` whole slabs. The two conventions are inverse: upscaling the LR grid by
``r`` lands exactly on the HR grid when ``n / r`` is an integer.
"""

from __future__ import annotations

import numpy as np

from medsr.errors import MedsrError

#: LPS <-> RAS: negate the first two world axes (the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Voxel sizes within this relative tolerance count as equal (isotropic).
ISOTROPY_RTOL = 0.05

#: Relative tolerance on the slab count floor(n / ratio) (see slab_count).
SLAB_COUNT_RTOL = 1e-4

_WORLD_AXES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def as_affine(affine: np.ndarray) -> np.ndarray:
    """Return ``affine`` as a validated 4x4 float64 array (raises MedsrError if singular)."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise MedsrError(f"affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise MedsrError(f"affine has non-finite entries:\n{a}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise MedsrError(f"affine is singular (zero voxel size or collinear axes):\n{a}")
    return a


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm along the three array axes, shape (3,)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def orientation_codes(affine: np.ndarray) -> str:
    """Three letters naming the world direction each array axis points to, e.g. ``"RAS"``, ``"LPI"``.

    Each axis takes the world axis its direction cosine is largest along (oblique scans: the closest).
    """
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    letters = ("RL", "AP", "SI")
    codes = []
    for ax in range(3):
        w = int(np.argmax(np.abs(cols[:, ax])))
        codes.append(letters[w][0 if cols[w, ax] > 0 else 1])
    return "".join(codes)


def through_plane_axis(affine: np.ndarray, rtol: float = ISOTROPY_RTOL) -> int:
    """The array axis with the largest voxel size (the slice axis of a thick-slice scan).

    Raises MedsrError when the volume is isotropic within ``rtol``: there is no thick axis.
    """
    sizes = voxel_sizes(affine)
    axis = int(np.argmax(sizes))
    others = np.delete(sizes, axis)
    if sizes[axis] <= others.max() * (1.0 + rtol):
        raise MedsrError(
            f"voxel sizes {_fmt(sizes)} mm are isotropic within {rtol:.0%}: there is no thick slice axis; "
            "pass --axis to choose one (and --factor or --spacing)"
        )
    return axis


def axis_from_direction(affine: np.ndarray, direction: str) -> int:
    """The array axis whose direction is closest to a world direction letter (R, L, A, P, S, I)."""
    key = direction.strip().upper()
    if key not in _WORLD_AXES:
        raise MedsrError(f"axis direction {direction!r} is not one of R, L, A, P, S, I (or 0, 1, 2)")
    world, _ = _WORLD_AXES[key]
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    cosines = np.abs(cols[world, :]) / np.linalg.norm(cols, axis=0)
    return int(np.argmax(cosines))


def resolve_axis(affine: np.ndarray, axis: int | str | None) -> int:
    """Array axis from an int, a digit string, a world letter, or None (the thick axis)."""
    if axis is None:
        return through_plane_axis(affine)
    if isinstance(axis, str) and axis.strip().lstrip("-").isdigit():
        axis = int(axis)
    if isinstance(axis, (int, np.integer)):
        if axis not in (0, 1, 2):
            raise MedsrError(f"axis {axis} is not an array axis of a 3-D volume: use 0, 1 or 2, or R/A/S")
        return int(axis)
    return axis_from_direction(affine, axis)


def factor_for_spacing(affine: np.ndarray, axis: int, spacing: float) -> float:
    """Upscaling factor that brings ``axis`` to ``spacing`` mm."""
    if not spacing > 0:
        raise MedsrError(f"target spacing {spacing} mm must be positive")
    return float(voxel_sizes(affine)[axis] / spacing)


def upscaled_grid(
    shape: tuple[int, ...], affine: np.ndarray, axis: int, factor: float
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a grid upscaled by ``factor`` along ``axis``, same physical extent.

    Args:
        shape: spatial shape (3,) of the input grid.
        affine: 4x4 voxel-to-world affine of the input, mm.
        axis: array axis to upscale.
        factor: > 0; the output has ``round(shape[axis] * factor)`` voxels along ``axis``.

    Returns:
        ``(shape_out, affine_out)``; output voxel ``i`` sits at input index ``(i + 0.5) / s_eff - 0.5``.
    """
    if not (np.isfinite(factor) and factor > 0):
        raise MedsrError(f"upscaling factor {factor} must be a positive number (e.g. 2, 4 or 2.5)")
    shape = tuple(int(n) for n in shape[-3:])
    n_out = int(round(shape[axis] * factor))
    if n_out < 1:
        raise MedsrError(f"factor {factor} leaves no voxel along axis {axis} (size {shape[axis]})")
    s_eff = n_out / shape[axis]
    scale = np.eye(4)
    scale[axis, axis] = 1.0 / s_eff
    scale[axis, 3] = 0.5 / s_eff - 0.5
    out_shape = list(shape)
    out_shape[axis] = n_out
    return (out_shape[0], out_shape[1], out_shape[2]), np.asarray(affine, dtype=np.float64) @ scale


def output_to_input_index(i: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """Input index (float) of output voxel ``i`` along the upscaled axis: ``(i + 0.5) * n_in / n_out - 0.5``."""
    return (np.asarray(i, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def slab_grid(
    shape: tuple[int, ...], affine: np.ndarray, axis: int, ratio: float
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the thick-slice grid with slab spacing ``ratio`` HR voxels along ``axis``.

    Slab 0 starts at the HR volume's edge; LR slice ``k`` is centred on HR index ``ratio*k + (ratio-1)/2``;
    only whole slabs are kept (``floor(n / ratio)`` of them).
    """
    if not (np.isfinite(ratio) and ratio > 0):
        raise MedsrError(f"slice spacing ratio {ratio} must be positive")
    shape = tuple(int(n) for n in shape[-3:])
    m = slab_count(shape[axis], ratio)
    if m < 1:
        raise MedsrError(
            f"slice spacing of {ratio:g} voxels is longer than the volume ({shape[axis]} voxels along axis {axis})"
        )
    step = np.eye(4)
    step[axis, axis] = ratio
    step[axis, 3] = (ratio - 1.0) / 2.0
    out_shape = list(shape)
    out_shape[axis] = m
    return (out_shape[0], out_shape[1], out_shape[2]), np.asarray(affine, dtype=np.float64) @ step


def slab_count(n: int, ratio: float) -> int:
    """Whole slabs of ``ratio`` HR voxels in ``n`` voxels: ``floor(n / ratio)``, tolerant to spacing noise.

    A relative tolerance of 1e-4 keeps the last slab when the measured spacing is a hair off (DICOM
    positions rounded to a few decimals give 0.99999996 mm for 1 mm slices).
    """
    return int(np.floor(n / ratio * (1.0 + SLAB_COUNT_RTOL)))


def slab_centres(n_slabs: int, ratio: float) -> np.ndarray:
    """HR indices (float) of the centres of ``n_slabs`` slabs of ``ratio`` HR voxels, shape (n_slabs,)."""
    return ratio * np.arange(n_slabs, dtype=np.float64) + (ratio - 1.0) / 2.0


def extent_corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the 8 outer corners of the voxel grid, shape (8, 3)."""
    shape = tuple(int(n) for n in shape[-3:])
    lo_hi = [(-0.5, n - 0.5) for n in shape]
    idx = np.array([[a, b, c] for a in lo_hi[0] for b in lo_hi[1] for c in lo_hi[2]], dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return idx @ a[:3, :3].T + a[:3, 3]


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
