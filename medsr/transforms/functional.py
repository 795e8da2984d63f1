"""Thick-slice acquisition physics as plain functions (the transforms in array.py wrap these).

Model: LR slice ``k`` is the HR volume weighted along the slice axis by the slice profile centred
on the slab centre; HR slice ``j``'s weight is the integral of the profile over that slice's
extent ``[j - 0.5, j + 0.5]`` (HR voxels), and the weights are normalised to sum to 1. Slab
placement follows :func:`medsr.geometry.slab_grid`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import erf

from medsr import geometry
from medsr.errors import MedsrError
from medsr.profiles import DEFAULT_PROFILE as DEFAULT_PROFILE
from medsr.profiles import PROFILES as PROFILES

#: FWHM of a Gaussian in units of its standard deviation, 2*sqrt(2*ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

Profile = str | np.ndarray

# PROFILES (named slice profiles; a 1-D kernel array is the alternative) and DEFAULT_PROFILE live in
# medsr.profiles so that the CLI reads them without importing torch; re-exported here.


def profile_cdf(profile: Profile, thickness: float, kernel_step: float | None = None):
    """Cumulative slice profile ``F(x)`` (x in mm from the slab centre), with ``F(-inf)=0, F(inf)=1``.

    Args:
        profile: ``"gaussian"`` (FWHM = ``thickness``), ``"boxcar"`` (width = ``thickness``), or a 1-D
            array of profile samples spaced ``kernel_step`` mm apart and centred on the slab centre.
        thickness: slice thickness in mm (FWHM); ignored for a user kernel.
        kernel_step: sample spacing of a user kernel, mm.
    """
    if isinstance(profile, str):
        name = profile.lower()
        if not (np.isfinite(thickness) and thickness > 0):
            raise MedsrError(f"slice thickness {thickness} mm must be positive")
        if name == "gaussian":
            sigma = thickness / FWHM_PER_SIGMA
            return lambda x: 0.5 * (1.0 + erf(np.asarray(x) / (sigma * np.sqrt(2.0))))
        if name == "boxcar":
            return lambda x: np.clip((np.asarray(x) + thickness / 2.0) / thickness, 0.0, 1.0)
        raise MedsrError(
            f"slice profile {profile!r} is not one of {', '.join(PROFILES)} (or pass a 1-D kernel)"
        )
    kernel = np.asarray(profile, dtype=np.float64).ravel()
    if kernel.size == 0 or np.any(kernel < 0) or not np.isfinite(kernel).all() or kernel.sum() <= 0:
        raise MedsrError("a user slice profile must be a non-empty 1-D array of finite, non-negative weights")
    if kernel_step is None or not kernel_step > 0:
        raise MedsrError("a user slice profile needs kernel_step, the spacing of its samples in mm")
    # Each sample is a bin of width kernel_step; the CDF is piecewise linear between bin edges.
    edges = (np.arange(kernel.size + 1) - kernel.size / 2.0) * kernel_step
    cdf = np.concatenate([[0.0], np.cumsum(kernel) / kernel.sum()])
    return lambda x: np.interp(np.asarray(x), edges, cdf, left=0.0, right=1.0)


def slab_weights(
    n_hr: int,
    hr_spacing: float,
    slice_thickness: float,
    slice_spacing: float,
    profile: Profile = "gaussian",
    kernel_step: float | None = None,
) -> np.ndarray:
    """Weights mapping HR slices to LR slices, shape (n_lr, n_hr), rows summing to 1.

    Args:
        n_hr: number of HR slices along the slice axis.
        hr_spacing: HR slice spacing, mm.
        slice_thickness: FWHM of the slice profile, mm.
        slice_spacing: LR slice spacing (centre to centre), mm; > thickness is a gap, < an overlap.
    """
    if not (np.isfinite(slice_spacing) and slice_spacing > 0):
        raise MedsrError(f"slice spacing {slice_spacing} mm must be positive")
    ratio = slice_spacing / hr_spacing
    n_lr = geometry.slab_count(n_hr, ratio)
    if n_lr < 1:
        raise MedsrError(
            f"slice spacing {slice_spacing:g} mm is longer than the volume "
            f"({n_hr} slices of {hr_spacing:g} mm)"
        )
    cdf = profile_cdf(profile, slice_thickness, kernel_step)
    centres = geometry.slab_centres(n_lr, ratio)[:, None] * hr_spacing
    lower = (np.arange(n_hr)[None, :] - 0.5) * hr_spacing
    weights = cdf(lower + hr_spacing - centres) - cdf(lower - centres)
    weights = np.clip(weights, 0.0, None)
    sums = weights.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        empty = int(np.argmax(sums[:, 0] <= 0))
        raise MedsrError(
            f"the slice profile puts no weight inside the volume for LR slice {empty}; use a profile with "
            "weight near its centre"
        )
    return weights / sums


def profile_fwhm(profile: Profile, thickness: float | None = None, kernel_step: float | None = None) -> float:
    """Full width at half maximum of a slice profile, mm.

    ``thickness`` for the named profiles; for a user kernel, the half-maximum crossings interpolated
    linearly between its samples (bin centres ``kernel_step`` mm apart), zero beyond its ends.
    """
    if isinstance(profile, str):
        if thickness is None:
            raise MedsrError(f"the {profile!r} slice profile needs a slice thickness (its FWHM in mm)")
        profile_cdf(profile, thickness)  # validates both
        return float(thickness)
    profile_cdf(profile, 1.0, kernel_step)  # validates the kernel
    k = np.concatenate([[0.0], np.asarray(profile, dtype=np.float64).ravel(), [0.0]])
    x = (np.arange(k.size) - (k.size - 1) / 2.0) * kernel_step
    half = k.max() / 2.0
    above = np.flatnonzero(k >= half)
    lo, hi = above[0], above[-1]
    left = np.interp(half, [k[lo - 1], k[lo]], [x[lo - 1], x[lo]])
    right = np.interp(half, [k[hi + 1], k[hi]], [x[hi + 1], x[hi]])
    return float(right - left)


def apply_slab_weights(data: torch.Tensor, weights: np.ndarray | torch.Tensor, axis: int) -> torch.Tensor:
    """Contract ``data`` along ``axis`` with ``weights`` (n_lr, n_hr); the axis length becomes n_lr."""
    w = torch.as_tensor(weights, dtype=torch.float64 if data.dtype == torch.float64 else torch.float32)
    moved = torch.movedim(data.as_subclass(torch.Tensor), axis, -1)
    out = torch.matmul(moved.to(w.dtype), w.T.to(moved.device))
    return torch.movedim(out, -1, axis).to(data.dtype)
