"""The in-memory volume: a channel-first MONAI MetaTensor whose ``meta["affine"]`` is the truth.

Meta keys medsr sets and reads (all optional except ``affine``):

======================  =======================================================================
``affine``              4x4 float64 torch tensor, voxel index -> RAS+ world mm
``space``               always ``"RAS"``
``filename_or_obj``     source path (str)
``format``              ``nifti``, ``dicom``, ``nrrd``, ``mha``, ``mhd``, ``nifti``
``original_dtype``      numpy dtype name of the stored voxels (e.g. ``"int16"``), for ``--dtype input``
``slice_thickness``     slice profile FWHM in mm when known: DICOM SliceThickness, or a sidecar's
                        (:mod:`medsr.io.slice_facts`), or what a simulation used
``slice_profile``       slice profile shape (``gaussian`` / ``boxcar``) when a sidecar or simulation names it
``slice_axis``          array axis that ``slice_thickness`` / ``slice_profile`` describe, when recorded
``slice_facts_source``  the sidecar JSON that ``slice_thickness`` / ``slice_profile`` came from
``modality``            DICOM Modality (``CT``, ``MR``...) when known
``nifti_codes``         ``(sform_code, qform_code)`` of a NIfTI input
``dicom_template``      path of one source DICOM file, used to write a derived series
``dicom_series_uid``    SeriesInstanceUID of a DICOM input
``rescale``             ``(RescaleSlope, RescaleIntercept)`` of a DICOM input (None if they vary by slice)
``dicom_sources``       the source slices of a DICOM input, for the references of a derived series
                        (:func:`medsr.io.dicom_refs.record_sources`)
======================  =======================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry

#: Meta keys that describe a volume's slices (they no longer hold once the slices are remade).
SLICE_KEYS = ("slice_thickness", "slice_profile", "slice_axis", "slice_facts_source")


def slice_fact(meta: Mapping[str, Any], axis: int, key: str) -> Any:
    """``meta[key]`` if it describes slices along array ``axis`` (``meta["slice_axis"]`` absent or equal), else None."""
    if meta.get("slice_axis") not in (None, axis):
        return None
    return meta.get(key)


def make_volume(array: np.ndarray | torch.Tensor, affine: np.ndarray, **meta: Any) -> MetaTensor:
    """Wrap a spatial array (X, Y, Z) or channel-first (C, X, Y, Z) as a float32 MetaTensor.

    ``affine`` is the 4x4 voxel-to-RAS-mm matrix of the spatial grid.
    """
    data = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4:
        raise ValueError(f"expected (X, Y, Z) or (C, X, Y, Z), got shape {tuple(data.shape)}")
    aff = torch.as_tensor(geometry.as_affine(affine), dtype=torch.float64)
    meta = {"space": "RAS", **meta}
    return MetaTensor(data.to(torch.float32), affine=aff, meta=meta)


def count_nonfinite(data: np.ndarray | torch.Tensor, chunk: int = 2**24) -> int:
    """NaN and infinite elements of ``data`` (any shape, CPU), counted ``chunk`` elements at a time.

    No mask the size of the volume is made: a large output is checked in constant extra memory.
    """
    if isinstance(data, torch.Tensor):
        flat = data.detach().as_subclass(torch.Tensor).reshape(-1)
        if not flat.is_floating_point():
            return 0
        return sum(
            int(part.numel() - torch.count_nonzero(torch.isfinite(part))) for part in flat.split(chunk)
        )
    flat = np.asarray(data).reshape(-1)
    if not np.issubdtype(flat.dtype, np.inexact):
        return 0
    return sum(int(np.count_nonzero(~np.isfinite(flat[i : i + chunk]))) for i in range(0, flat.size, chunk))


def affine_of(volume: MetaTensor) -> np.ndarray:
    """The 4x4 float64 voxel-to-RAS affine of ``volume`` as numpy."""
    aff = volume.meta.get("affine", getattr(volume, "affine", None))
    return np.asarray(torch.as_tensor(aff).detach().cpu().double().numpy(), dtype=np.float64).reshape(4, 4)


def spatial_shape(volume: torch.Tensor) -> tuple[int, int, int]:
    """(X, Y, Z) of a channel-first volume."""
    x, y, z = (int(n) for n in volume.shape[-3:])
    return x, y, z


def with_grid(volume: MetaTensor, data: torch.Tensor, affine: np.ndarray, **meta: Any) -> MetaTensor:
    """A new MetaTensor holding ``data`` (C, X, Y, Z) on the grid ``affine``, other metadata copied.

    Use this whenever a grid changes so the affine is replaced in the same step.
    """
    new_meta = {k: v for k, v in dict(volume.meta).items() if k not in ("affine", "spatial_shape")}
    new_meta.update(meta)
    out = make_volume(
        data.as_subclass(torch.Tensor) if isinstance(data, MetaTensor) else data, affine, **new_meta
    )
    return out
