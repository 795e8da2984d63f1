"""Full-reference image metrics on arrays that share one grid (X, Y, Z), restricted to a mask.

Conventions (reported in every evaluation, see docs/evaluation.md):

- ``data_range`` = P99.5 - P0.5 of the reference (HR) over the voxels the SR covers (robust to a few
  hot voxels, unlike max - min);
- PSNR = 10 log10(data_range^2 / MSE) dB over the mask, ``inf`` when MSE is 0;
- NRMSE = RMSE / data_range (the same range as PSNR);
- SSIM: 3-D, Gaussian window sigma 1.5 voxels (radius 5), K1 0.01, K2 0.03, population statistics
  (Wang et al. 2004 as in scikit-image), the SSIM map averaged over the mask;
- edge sharpness: mean |d SR / d a| / mean |d HR / d a| along the upscaled axis ``a`` over the mask's
  strongest HR edges (top 10 % of |d HR / d a|): 1 is as sharp as the truth, < 1 blurred, > 1 overshoot.
"""

from __future__ import annotations

import numpy as np

from medsr.errors import MedsrError

#: The data range's percentiles, taken over all covered voxels (runtime.normalise.robust_range).
PERCENTILES = (0.5, 99.5)
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # scikit-image's Gaussian window: truncate = 3.5 sigma
EDGE_TOP_FRACTION = 0.10


def mse(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference over ``mask`` (float64 accumulation)."""
    diff = sr[mask].astype(np.float64) - hr[mask].astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """PSNR in dB over ``mask``; ``inf`` for identical values."""
    err = mse(sr, hr, mask)
    return float("inf") if err == 0.0 else float(10.0 * np.log10(data_range**2 / err))


def nrmse(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """RMSE over ``mask`` divided by ``data_range``."""
    return float(np.sqrt(mse(sr, hr, mask)) / data_range)


def mae(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference over ``mask``, in the volume's units."""
    return float(np.mean(np.abs(sr[mask].astype(np.float64) - hr[mask].astype(np.float64))))


def ssim(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """3-D SSIM (scikit-image, Gaussian window) averaged over ``mask``.

    The arrays are cropped to the mask's bounding box plus the window radius first: every window
    centred in the mask then sees the same voxels as on the whole volume, at a fraction of the cost.
    """
    from skimage.metrics import structural_similarity

    box = _bounding_box(mask, SSIM_RADIUS)
    a, b, m = hr[box].astype(np.float32), sr[box].astype(np.float32), mask[box]
    if min(a.shape) < 2 * SSIM_RADIUS + 1:
        raise MedsrError(
            f"the evaluated region {a.shape} is too small for 3-D SSIM: it needs at least "
            f"{2 * SSIM_RADIUS + 1} voxels along each axis"
        )
    _, smap = structural_similarity(
        a,
        b,
        data_range=float(data_range),
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return float(np.mean(smap[m], dtype=np.float64))


def edge_sharpness(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Mean |gradient| of SR over that of HR along ``axis``, on the strongest HR edges in ``mask``.

    Returns NaN when HR has no gradient along ``axis`` inside the mask.
    """
    g_hr = np.abs(np.gradient(hr.astype(np.float32), axis=axis))
    values = g_hr[mask]
    if values.size == 0 or not np.any(values > 0):
        return float("nan")
    threshold = np.quantile(values, 1.0 - EDGE_TOP_FRACTION)
    edges = mask & (g_hr >= threshold) & (g_hr > 0)
    g_sr = np.abs(np.gradient(sr.astype(np.float32), axis=axis))
    return float(np.mean(g_sr[edges], dtype=np.float64) / np.mean(g_hr[edges], dtype=np.float64))


def full_reference(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, data_range: float, axis: int) -> dict:
    """All full-reference metrics as a flat dict (see the module docstring for the conventions)."""
    if not np.any(mask):
        raise MedsrError("the evaluation mask is empty; check --mask (or that SR and HR overlap)")
    if not data_range > 0:
        raise MedsrError(
            f"the reference's robust intensity range is {data_range:g} (P99.5 - P0.5): it is nearly constant "
            "inside the mask, so PSNR/SSIM are undefined; check the HR file and the mask"
        )
    return {
        "psnr_db": psnr(sr, hr, mask, data_range),
        "ssim": ssim(sr, hr, mask, data_range),
        "nrmse": nrmse(sr, hr, mask, data_range),
        "mae": mae(sr, hr, mask),
        "edge_sharpness": edge_sharpness(sr, hr, mask, axis),
    }


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (scikit-image, 256-bin histogram)."""
    from skimage.filters import threshold_otsu

    if values.size == 0 or float(values.min()) == float(values.max()):
        return float(values.min()) - 1.0 if values.size else 0.0
    return float(threshold_otsu(values.astype(np.float32)))


def foreground_mask(reference: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
    """Voxels of ``reference`` above Otsu's threshold (within ``valid``), and the threshold."""
    threshold = otsu_threshold(reference[valid])
    return valid & (reference > threshold), threshold


def exclude_edge_slabs(mask: np.ndarray, valid: np.ndarray, axis: int, width: int) -> np.ndarray:
    """``mask`` without the first and last ``width`` slices of the valid region along ``axis``."""
    other = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero(np.any(valid, axis=other))
    out = mask.copy()
    if present.size == 0 or width <= 0:
        return out
    index = [slice(None)] * 3
    index[axis] = slice(int(present[0]), int(present[0]) + width)
    out[tuple(index)] = False
    index[axis] = slice(max(int(present[-1]) + 1 - width, 0), int(present[-1]) + 1)
    out[tuple(index)] = False
    return out


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(np.any(mask, axis=other))
        lo, hi = (int(present[0]), int(present[-1]) + 1) if present.size else (0, mask.shape[axis])
        box.append(slice(max(lo - margin, 0), min(hi + margin, mask.shape[axis])))
    return tuple(box)
