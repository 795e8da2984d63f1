"""How a derived DICOM series names its source and its derivation.

The reader records the source slices in ``meta["dicom_sources"]``: the LPS unit slice normal and, for
every slice in sorted order, ``(SOPClassUID, SOPInstanceUID, position)`` with ``position`` the distance
in mm of its ImagePositionPatient along that normal. Each derived instance then gets:

- SourceImageSequence: the source slice at its own position along the source normal (within
  :data:`COINCIDE_MM`), else the two source slices on either side of it, else (beyond the first or last
  source slice) the nearest one; each item with PurposeOfReferenceCodeSequence (DCM 121322 "Source image
  for image processing operation", CID 7202).
- ReferencedSeriesSequence (Common Instance Reference module): the source SeriesInstanceUID with the same
  instances. The derived series stays in the source's study, so no StudyInstanceUID is named there (the
  module names another study only through StudiesContainingOtherReferencedInstancesSequence).
- DerivationDescription (medsr, its version, the method and the factor) and DerivationCodeSequence
  (DCM 113085 "Spatial resampling", CID 7203) when the volume records an upscaling or a simulation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

#: An output slice this close (mm, along the source normal) to a source slice refers to that slice alone.
COINCIDE_MM = 0.01
#: (CodeValue, CodingSchemeDesignator, CodeMeaning)
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")  # CID 7202
SPATIAL_RESAMPLING = ("113085", "DCM", "Spatial resampling")  # CID 7203


def record_sources(headers: Sequence[Dataset], positions: np.ndarray, normal: np.ndarray) -> dict:
    """``meta["dicom_sources"]`` for the sorted source slices' ``headers``, their ``positions`` (Z,) in mm
    along the LPS unit slice ``normal`` (3,)."""
    slices = []
    for ds, pos in zip(headers, np.asarray(positions, dtype=np.float64), strict=True):
        file_meta = getattr(ds, "file_meta", None)
        sop_class = ds.get("SOPClassUID") or (file_meta.get("MediaStorageSOPClassUID") if file_meta else None)
        slices.append((str(sop_class or ""), str(ds.get("SOPInstanceUID", "")), float(pos)))
    return {"normal": [float(v) for v in normal], "slices": slices}


def nearest_sources(sources: Mapping[str, Any], centres: np.ndarray) -> list[list[int]]:
    """For each output slice centre (Z, 3) in LPS mm, the indices of its one or two source slices."""
    normal = np.asarray(sources["normal"], dtype=np.float64)
    pos = np.array([s[2] for s in sources["slices"]], dtype=np.float64)
    out = []
    for d in np.asarray(centres, dtype=np.float64) @ normal:
        j = int(np.argmin(np.abs(pos - d)))
        if abs(pos[j] - d) <= COINCIDE_MM or d <= pos[0] or d >= pos[-1]:
            out.append([j])
        else:
            after = int(np.searchsorted(pos, d))
            out.append([after - 1, after])
    return out


def add_references(ds: Dataset, sources: Mapping[str, Any], indices: Sequence[int], series_uid: str) -> None:
    """Set SourceImageSequence and ReferencedSeriesSequence of ``ds`` to the source slices ``indices``."""
    picked = [sources["slices"][j] for j in indices if all(sources["slices"][j][:2])]
    if not picked:
        return
    ds.SourceImageSequence = DicomSequence([_image_ref(c, i, purpose=True) for c, i, _ in picked])
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ReferencedInstanceSequence = DicomSequence([_image_ref(c, i, purpose=False) for c, i, _ in picked])
    ds.ReferencedSeriesSequence = DicomSequence([series])


def add_derivation(ds: Dataset, meta: Mapping[str, Any], version: str) -> None:
    """DerivationDescription naming medsr, ``version``, the method and factor; DerivationCodeSequence."""
    facts, simulation = meta.get("medsr") or {}, meta.get("simulation") or {}
    if facts.get("method"):
        spacing = facts.get("spacing_mm")
        axis = facts.get("axis")
        along = f" along array axis {axis}" if axis is not None else ""
        if spacing is not None and axis is not None:
            along += f" (slice spacing {float(spacing[axis]):g} mm)"
        what = f"through-plane super-resolution, method {facts['method']}, factor {float(facts['factor']):g}{along}"
    elif simulation:
        what = (
            f"thick-slice simulation, {simulation.get('profile')} profile {simulation.get('slice_thickness_mm'):g} "
            f"mm thick, {simulation.get('slice_spacing_mm'):g} mm apart along array axis {simulation.get('axis')}"
        )
    else:
        ds.DerivationDescription = f"medsr {version}"
        return
    ds.DerivationDescription = f"medsr {version}: {what}"[:1024]
    ds.DerivationCodeSequence = DicomSequence([_code(*SPATIAL_RESAMPLING)])


def _image_ref(sop_class: str, sop_instance: str, *, purpose: bool) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if purpose:
        item.PurposeOfReferenceCodeSequence = DicomSequence([_code(*SOURCE_PURPOSE)])
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item
