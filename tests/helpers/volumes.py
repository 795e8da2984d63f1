"""Small synthetic volumes on oblique, flipped, anisotropic grids, and the devices tests run on."""

from __future__ import annotations

import numpy as np
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_rotation(rng: np.random.Generator, max_angle_deg: float = 30.0) -> np.ndarray:
    """A random rotation matrix (3, 3) within ``max_angle_deg`` of identity."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def make_affine(
    spacing: tuple[float, float, float] = (0.9, 0.9, 4.0),
    *,
    rng: np.random.Generator | None = None,
    oblique: bool = True,
    flips: tuple[int, int, int] = (1, 1, 1),
) -> np.ndarray:
    """4x4 affine with given voxel sizes (mm), optional random obliquity, axis flips and origin."""
    rng = rng or np.random.default_rng(0)
    rot = random_rotation(rng) if oblique else np.eye(3)
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(np.asarray(spacing) * np.asarray(flips))
    affine[:3, 3] = rng.uniform(-120, 120, size=3)
    return affine


def blob_volume(shape: tuple[int, int, int], rng: np.random.Generator | None = None) -> np.ndarray:
    """A smooth-plus-edges test image (float32): ellipsoids of different intensities plus mild noise."""
    rng = rng or np.random.default_rng(1)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(6):
        centre = rng.uniform(-0.5, 0.5, size=3)
        radii = rng.uniform(0.2, 0.6, size=3)
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0
        out[inside] += rng.uniform(50, 200)
    return out + rng.normal(0, 1, size=shape).astype(np.float32)


def slice_profile(volume, axis: int, thickness: float | None = None, shape: str | None = None):
    """The SliceProfile ``upscale`` resolves for ``volume`` along ``axis`` (what selfsup_upscale and
    model_upscale take): ``thickness``/``shape`` as given, else the volume's, else the slice spacing."""
    from medsr.inference.slice_profile import resolve_slice_profile

    return resolve_slice_profile(volume, axis, thickness, shape, reads_shape=True)
