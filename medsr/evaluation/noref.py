"""No-reference measures of through-plane detail, for real thick scans with no ground truth.

Both compare the upscaled (through-plane) axis ``a`` with the two in-plane axes of the same volume,
in physical units, so they need no HR and no model of the scanner:

- ``gradient_ratio`` = mean |dI/dx_a| / mean over in-plane axes of mean |dI/dx_b| (intensity per mm,
  central differences) inside the foreground mask. Interpolated slices have weak through-plane gradients
  (ratio well below 1); a volume as detailed along ``a`` as in-plane gives about 1.
- ``spectral_ratio`` = the share of an axis's (non-DC) power in the band [f/2, f] cycles/mm, through-plane
  over in-plane, with f the lowest Nyquist frequency of the three axes (0.5 / largest spacing). Power
  spectra are taken along each axis (Hann window, mean removed per line) and summed over all lines.

Anatomy is not isotropic, so read both as relative numbers: compare methods (or scans) against each other,
and compare a thick scan's in-plane axes with its upscaled one; they are not calibrated quality scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.data import MetaTensor

from medsr import geometry
from medsr.evaluation.compare import evaluation_mask, spatial_array, upscaled_axis, volume_name
from medsr.io.volume import affine_of


def mean_gradient(data: np.ndarray, spacing: float, axis: int, mask: np.ndarray) -> float:
    """Mean |dI/dx| along ``axis`` over ``mask``, in intensity units per mm."""
    grad = np.gradient(data.astype(np.float32), float(spacing), axis=axis)
    return float(np.mean(np.abs(grad[mask]), dtype=np.float64))


def band_fraction(data: np.ndarray, spacing: float, axis: int, band: tuple[float, float]) -> float:
    """Share of the power in ``band`` (cycles/mm) among frequencies in (0, band[1]], along ``axis``."""
    from scipy import fft

    lines = np.moveaxis(data.astype(np.float32), axis, -1)
    n = lines.shape[-1]
    if n < 4:
        return float("nan")
    lines = (lines - lines.mean(axis=-1, keepdims=True)) * np.hanning(n).astype(np.float32)
    power = np.abs(fft.rfft(lines, axis=-1, workers=-1)) ** 2
    power = power.reshape(-1, power.shape[-1]).sum(axis=0, dtype=np.float64)
    freq = np.fft.rfftfreq(n, d=float(spacing))
    tol = 1e-9
    total = power[(freq > 0) & (freq <= band[1] + tol)].sum()
    high = power[(freq >= band[0] - tol) & (freq <= band[1] + tol)].sum()
    return float(high / total) if total > 0 else float("nan")


def no_reference(
    volume: MetaTensor,
    *,
    axis: int | str | None = None,
    mask: str | MetaTensor = "auto",
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """No-reference report for one volume (1, X, Y, Z): through-plane vs in-plane detail, JSON-ready.

    ``axis`` defaults as in :func:`medsr.evaluation.compare.upscaled_axis` (sidecar, thickest, closest to S);
    ``mask``: ``auto`` (Otsu foreground), ``none`` or a mask volume on any grid overlapping the volume.
    """
    data = spatial_array(volume)
    affine = affine_of(volume)
    spacing = geometry.voxel_sizes(affine)
    ax, source = upscaled_axis(volume, axis, facts or {})
    region, mask_info = evaluation_mask(mask, volume, np.ones(data.shape, dtype=bool))
    in_plane = [b for b in range(3) if b != ax]
    gradients = {b: mean_gradient(data, spacing[b], b, region) for b in range(3)}
    f_hi = float(0.5 / spacing.max())
    band = (f_hi / 2.0, f_hi)
    fractions = {b: band_fraction(data, spacing[b], b, band) for b in range(3)}
    g_in = float(np.mean([gradients[b] for b in in_plane]))
    s_in = float(np.mean([fractions[b] for b in in_plane]))
    return {
        "schema": "medsr.evaluate.noref/1",
        "sr": volume_name(volume),
        "axis": {"sr": ax, "direction": geometry.orientation_codes(affine)[ax], "source": source},
        "spacing_mm": [round(float(s), 6) for s in spacing],
        "mask": mask_info,
        "metrics": {
            "gradient_ratio": gradients[ax] / g_in if g_in > 0 else float("nan"),
            "spectral_ratio": fractions[ax] / s_in if s_in > 0 else float("nan"),
        },
        "details": {
            "gradient_per_mm": [gradients[b] for b in range(3)],
            "band_cycles_per_mm": list(band),
            "band_power_fraction": [fractions[b] for b in range(3)],
        },
    }
