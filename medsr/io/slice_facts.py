"""Slice thickness and profile of a volume file, from the JSON sidecar beside it.

NIfTI, NRRD and MHA headers do not store the slice thickness (FWHM of the slice profile), only the
spacing, yet self-supervised upscaling depends on both (docs/performance.md: a wrong profile shape
costs more than any tuning). Two sidecars carry them and sit beside the volume with the same stem
(``scan.nii.gz`` -> ``scan.json``):

- a BIDS / dcm2niix sidecar: ``"SliceThickness"`` in mm (the DICOM attribute, copied by the converter);
- a ``medsr simulate`` sidecar: ``"slice_thickness_mm"`` and ``"profile"``, trusted only when its
  ``"lr_shape"`` is the volume's shape (the sidecar describes this file, not an earlier one).

Anything else (no sidecar, unreadable JSON, a ``medsr infer`` sidecar, implausible values) gives no facts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsr.io.naming import read_sidecar, sidecar_path
from medsr.profiles import PROFILES


def read_slice_facts(path: Path, shape: Sequence[int]) -> dict[str, Any]:
    """Meta entries for a volume file at ``path`` of spatial ``shape`` from its sidecar, else {}.

    Returns:
        Any of ``slice_thickness`` (mm), ``slice_profile`` (``gaussian`` or ``boxcar``), ``slice_axis``
        (the array axis they describe, from medsr simulate) and ``slice_facts_source`` (the sidecar's
        path) when a thickness or profile is found.
    """
    sidecar = sidecar_path(Path(path))
    doc = read_sidecar(sidecar)
    facts: dict[str, Any] = {}
    if "lr_shape" in doc and "slice_thickness_mm" in doc:  # written by medsr simulate
        if list(doc.get("lr_shape") or []) != [int(n) for n in shape]:
            return {}
        thickness = positive_mm(doc.get("slice_thickness_mm"))
        profile = doc.get("profile")
        if isinstance(profile, str) and profile.lower() in PROFILES:
            facts["slice_profile"] = profile.lower()
        if doc.get("axis") in (0, 1, 2):
            facts["slice_axis"] = int(doc["axis"])
    elif "method" in doc:  # a medsr infer sidecar describes the input it was made from, not this file
        return {}
    else:
        thickness = positive_mm(doc.get("SliceThickness"))
    if thickness is not None:
        facts["slice_thickness"] = thickness
    if facts:
        facts["slice_facts_source"] = str(sidecar)
    return facts


def positive_mm(value: Any) -> float | None:
    """``value`` as a plausible thickness in mm (a finite number in (0, 100]), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 < value <= 100.0 else None
