"""Do the slices look as thick as their spacing? A check for scans whose slice thickness is unknown.

A NIfTI file stores the slice spacing but not the thickness, so medsr assumes thickness = spacing.
Thin slices with gaps (e.g. 1 mm slices every 4 mm, or every 4th slice of a thin scan) break that
assumption badly: the network then learns to undo a 4 mm blur that is not there and the result is
worse than cubic interpolation (docs/performance.md). The check compares how rough the scan is
through-plane with how rough its in-plane slices become when degraded with candidate thicknesses.

Roughness of a sequence sampled every ``spacing`` mm is ``rho = E[(s[k+1] - s[k])^2] / E[(s[k+2] - s[k])^2]``:
about 1/4 for smooth (thick, blurred) slices and up to 1/2 for unblurred anatomy (whose differences
grow like a random walk's). It does not depend on contrast. Anatomy is not isotropic, so the
estimate is only good to a factor of about 1.5 (tested in tests/test_thickness_check.py and measured
in benchmarks/selfsup_quality.py); it is used to tell thin, gapped slices from contiguous ones, not
to fine-tune a width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medsr.inference.selfsup.noise import input_noise
from medsr.inference.selfsup.pairs import make_stacks
from medsr.profiles import SliceProfile

#: Below this fraction of the spacing, estimated slices count as thin with gaps.
THIN_FRACTION = 0.5
#: Candidate thicknesses, as fractions of the slice spacing.
CANDIDATES = np.linspace(0.15, 1.5, 19)
#: Fewer slices, or in-plane slices shorter than this many slice spacings, are too little anatomy to
#: tell (on 12-slice crops of the MNI152 T1, contiguous 4 mm slices were called thin as often as not).
MIN_SAMPLES = 20


def roughness(stack: torch.Tensor, dim: int) -> tuple[float, float]:
    """Mean squared lag-1 and lag-2 differences of ``stack`` along ``dim`` (float64 sums)."""
    n = stack.shape[dim]
    lag1 = stack.narrow(dim, 1, n - 1) - stack.narrow(dim, 0, n - 1)
    lag2 = stack.narrow(dim, 2, n - 2) - stack.narrow(dim, 0, n - 2)
    return float(lag1.double().pow(2).mean()), float(lag2.double().pow(2).mean())


def estimate_thickness(
    norm: torch.Tensor,
    axis: int,
    sizes: Sequence[float],
    profile: str,
    noise: float = 0.0,
    max_slices: int = 24,
) -> float | None:
    """Slice profile FWHM in mm that makes degraded in-plane slices as rough as the scan through-plane.

    Args:
        norm: (X, Y, Z) normalised intensities; ``axis`` is the slice axis, ``sizes`` the voxel sizes in mm.
        profile: the profile shape to degrade with (``gaussian`` / ``boxcar``).
        noise: the scan's noise std (normalised units), added to the degraded slices' energies as the
            acquired slices carry it.
        max_slices: in-plane slices used for the candidates (evenly spaced).

    Returns:
        The estimate in mm (clipped to the candidate range 0.15-1.5 x spacing), or None when the volume
        is too small to tell (fewer than ``MIN_SAMPLES`` slices, or in-plane slices shorter than
        ``MIN_SAMPLES`` slice spacings).
    """
    spacing = float(sizes[axis])
    slices = torch.movedim(norm, axis, 0)  # (n, A, B)
    in_plane = [float(sizes[a]) for a in range(3) if a != axis]
    factor = max(2, int(round(spacing / min(in_plane))))
    extent = min(s * mm for s, mm in zip(slices.shape[1:], in_plane, strict=True))
    if slices.shape[0] < MIN_SAMPLES or extent < MIN_SAMPLES * spacing:
        return None
    through = roughness(slices, 0)
    pick = torch.linspace(0, slices.shape[0] - 1, min(max_slices, slices.shape[0])).round().long().unique()
    sample = slices[pick]
    rho = []
    for fraction in CANDIDATES:
        thickness = float(fraction * spacing)
        extra = 2.0 * input_noise(noise, factor, thickness, spacing, profile) ** 2
        lag1 = lag2 = 0.0
        for images, mm in ((sample, in_plane[0]), (sample.transpose(1, 2), in_plane[1])):
            stack = make_stacks(images, mm, factor, thickness, spacing, phases=False, profile=profile)[0]
            a, b = roughness(stack.lr, 1)
            lag1, lag2 = lag1 + a + extra, lag2 + b + extra
        rho.append(lag1 / lag2 if lag2 > 0 else 0.5)
    if through[1] <= 0:
        return None
    order = np.argsort(rho)  # roughness falls as the slices thicken
    fraction = np.interp(through[0] / through[1], np.asarray(rho)[order], CANDIDATES[order])
    return float(fraction * spacing)


def looks_thin(estimate: float | None, spacing: float) -> bool:
    """Whether an estimate says the slices are clearly thinner than their spacing (gaps between them)."""
    return estimate is not None and estimate < THIN_FRACTION * spacing


def checked_profile(
    profile: SliceProfile, norm: torch.Tensor, axis: int, sizes: Sequence[float], shape: str, sigma: float
) -> SliceProfile:
    """``profile`` (its thickness not known: the slice spacing) refined by a look at the slices.

    The thickness stays the spacing unless the slices, degraded with ``shape``, clearly look thinner;
    then it is their estimate, with a source saying so. The estimate is recorded either way.
    """
    spacing = float(sizes[axis])
    estimate = estimate_thickness(norm, axis, sizes, shape, noise=sigma)
    if looks_thin(estimate, spacing):
        source = (
            f"estimated from the scan: its slices look about {estimate:.2g} mm thick, thinner than their "
            f"{spacing:g} mm spacing"
        )
        return profile.with_estimate(estimate, estimate, source)
    return profile.with_estimate(estimate, profile.thickness_mm, profile.thickness_source)
