"""A plain-data summary of a volume's geometry and intensities (``medsr info``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of, spatial_shape


def describe(volume: MetaTensor) -> dict[str, Any]:
    """Format, shape, spacing (mm, array-axis order), orientation, through-plane axis and intensities."""
    affine = affine_of(volume)
    sizes = geometry.voxel_sizes(affine)
    try:
        axis: int | None = geometry.through_plane_axis(affine)
    except MedsrError:
        axis = None
    data = volume.detach().as_subclass(torch.Tensor)
    finite = torch.isfinite(data)
    values = data[finite]
    return {
        "path": str(volume.meta.get("filename_or_obj", "")),
        "format": volume.meta.get("format", "unknown"),
        "shape": list(spatial_shape(volume)),
        "spacing": [round(float(s), 6) for s in sizes],
        "orientation": geometry.orientation_codes(affine),
        "through_plane_axis": axis,
        "anisotropy": round(float(sizes.max() / sizes.min()), 4),
        "dtype": volume.meta.get("original_dtype", "float32"),
        "intensity_range": [float(values.min()), float(values.max())] if values.numel() else [None, None],
        "non_finite_voxels": int(finite.numel() - torch.count_nonzero(finite)),
        "slice_thickness": volume.meta.get("slice_thickness"),
        "slice_profile": volume.meta.get("slice_profile"),
        "slice_facts_source": volume.meta.get("slice_facts_source"),
        "slice_axis": volume.meta.get("slice_axis"),
        "modality": volume.meta.get("modality"),
        "affine": np.round(affine, 6).tolist(),
    }


def format_description(info: dict[str, Any]) -> str:
    """Human-readable lines for :func:`describe`'s dict."""
    axis = info["through_plane_axis"]
    lines = [
        f"path         {info['path']}",
        f"format       {info['format']}" + (f" ({info['modality']})" if info.get("modality") else ""),
        f"shape        {tuple(info['shape'])}",
        "spacing      " + " x ".join(f"{s:g}" for s in info["spacing"]) + " mm",
        f"orientation  {info['orientation']}",
        "through-plane axis  "
        + (f"{axis} ({info['orientation'][axis]})" if axis is not None else "none (isotropic)"),
        f"anisotropy   {info['anisotropy']:g}",
        f"dtype        {info['dtype']}",
        f"intensities  {info['intensity_range'][0]:g} .. {info['intensity_range'][1]:g}"
        if info["intensity_range"][0] is not None
        else "intensities  none finite",
    ]
    if info.get("slice_thickness"):
        profile = f" {info['slice_profile']} profile" if info.get("slice_profile") else ""
        along = f" along axis {info['slice_axis']}" if info.get("slice_axis") is not None else ""
        source = f" (from {info['slice_facts_source']})" if info.get("slice_facts_source") else ""
        lines.append(f"thickness    {info['slice_thickness']:g} mm{profile}{along}{source}")
    if info["non_finite_voxels"]:
        lines.append(f"warning      {info['non_finite_voxels']} NaN/Inf voxels")
    return "\n".join(lines)
