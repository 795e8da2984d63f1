"""Resolve a scan's slice profile once (:class:`medsr.profiles.SliceProfile`): thickness, shape, sources."""

from __future__ import annotations

import numpy as np
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of, slice_fact
from medsr.profiles import SliceProfile

#: The thickness source when only the slice spacing is known (sidecar text).
SPACING_SOURCE = "slice spacing"


def resolve_slice_profile(
    volume: MetaTensor, axis: int, thickness: float | None, shape: str | None, *, reads_shape: bool = False
) -> SliceProfile:
    """The slice profile along ``axis``.

    Thickness (FWHM, mm), in order: ``thickness`` (given), the volume's ``meta["slice_thickness"]``
    (DICOM SliceThickness, a sidecar JSON, a simulation; :func:`medsr.io.volume.slice_fact`), else the
    slice spacing (not known). Shape: ``shape`` (given), else, with ``reads_shape`` (a method that trains
    on the shape: selfsup without a stored network, which brings its own), the volume's ``slice_profile``
    (a ``medsr simulate`` sidecar), else not named; a name in lower case, checked by the method that uses it.
    """
    known = True
    if thickness is not None:
        value, source = thickness, "given"
    elif slice_fact(volume.meta, axis, "slice_thickness"):
        value = volume.meta["slice_thickness"]
        source = volume.meta.get("slice_facts_source") or (
            "DICOM SliceThickness" if volume.meta.get("format") == "dicom" else "the volume's metadata"
        )
    else:
        value, source, known = float(geometry.voxel_sizes(affine_of(volume))[axis]), SPACING_SOURCE, False
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise MedsrError(f"slice thickness {value} mm ({source}) must be positive")
    shape_source = "given" if shape is not None else None
    if shape is None and reads_shape and slice_fact(volume.meta, axis, "slice_profile"):
        shape = volume.meta["slice_profile"]
        shape_source = volume.meta.get("slice_facts_source") or "the volume's metadata"
    shape = shape.strip().lower() if shape is not None else None  # the method checks the name
    return SliceProfile(value, source, known, shape, shape_source)
