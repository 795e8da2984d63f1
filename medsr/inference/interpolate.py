"""Interpolation baselines (nearest, linear, cubic B-spline) along one axis, through SimpleITK.

Resampling happens in index space onto the grid of :func:`medsr.geometry.upscaled_grid`, so the
output voxel ``i`` is sampled at input index ``(i + 0.5) / s_eff - 0.5``; samples past the first and
last slice centres take the nearest edge value (no zero padding).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of, spatial_shape, with_grid

INTERPOLATORS = ("nearest", "linear", "bspline")
#: Other names accepted for a method, and the canonical name recorded in sidecars and reports: the docs
#: (and most papers) call the cubic B-spline baseline "cubic".
METHOD_ALIASES = {"cubic": "bspline"}


def canonical_method(name: str) -> str:
    """The canonical name of a method (``cubic`` -> ``bspline``); any other name unchanged."""
    return METHOD_ALIASES.get(name, name)


def interpolate_array(data: np.ndarray, axis: int, n_out: int, method: str = "bspline") -> np.ndarray:
    """Resample a 3-D array (X, Y, Z) to ``n_out`` samples along ``axis`` (convention grid), float32."""
    import SimpleITK as sitk

    table = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
    method = canonical_method(method)
    if method not in table:
        raise MedsrError(f"interpolation method {method!r} is not one of {', '.join(INTERPOLATORS)}")
    n_in = data.shape[axis]
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.swapaxes(data.astype(np.float32), 0, 2)))
    size = list(data.shape)
    size[axis] = n_out
    spacing = [1.0, 1.0, 1.0]
    origin = [0.0, 0.0, 0.0]
    spacing[axis] = n_in / n_out
    origin[axis] = float(geometry.output_to_input_index(0, n_in, n_out))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in size])
    resampler.SetOutputSpacing(spacing)
    resampler.SetOutputOrigin(origin)
    resampler.SetInterpolator(table[method])
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    out = sitk.GetArrayFromImage(resampler.Execute(image))
    return np.swapaxes(out, 0, 2)


def interpolate_upscale(volume: MetaTensor, axis: int, factor: float, method: str = "bspline") -> MetaTensor:
    """Upscale ``volume`` (1, X, Y, Z) by ``factor`` along ``axis`` with an interpolator.

    Returns a MetaTensor on the grid of :func:`medsr.geometry.upscaled_grid` (same physical extent).
    """
    shape_out, affine_out = geometry.upscaled_grid(spatial_shape(volume), affine_of(volume), axis, factor)
    data = volume.detach().cpu().as_subclass(torch.Tensor).numpy()
    out = np.stack([interpolate_array(c, axis, shape_out[axis], method) for c in data])
    return with_grid(volume, torch.from_numpy(out), affine_out)
