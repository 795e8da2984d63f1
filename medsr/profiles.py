"""Slice profile names, kept free of heavy imports: the CLI reads them when it starts.

The profiles themselves (their cumulative distributions and slab weights) are in
:mod:`medsr.transforms.functional`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Slice profile shapes medsr simulates and learns to undo.
PROFILES = ("gaussian", "boxcar")

#: The profile assumed when nothing names one.
DEFAULT_PROFILE = "gaussian"

#: For selfsup training only, when the shape is unknown: pairs made with every shape in PROFILES.
MIXED_PROFILE = "mixed"

#: What selfsup learns from: one shape, or all of them.
SELFSUP_PROFILES = (*PROFILES, MIXED_PROFILE)


def profile_shapes(profile: str) -> tuple[str, ...]:
    """The slice profile shapes a selfsup ``profile`` trains on: all of PROFILES for ``"mixed"``."""
    return PROFILES if profile == MIXED_PROFILE else (profile,)


@dataclass(frozen=True)
class SliceProfile:
    """The slices of a scan along the upscaled axis, resolved once: thickness, shape and their sources.

    ``thickness_source`` and ``shape_source`` are the sidecar's words (``"given"``, ``"DICOM
    SliceThickness"``, a sidecar path, ``"the volume's metadata"``, ``"slice spacing"``).
    ``thickness_known`` is False when only the slice spacing stood in for the thickness: selfsup then
    checks the slices themselves (:mod:`medsr.inference.selfsup.thickness`).
    """

    thickness_mm: float  # FWHM
    thickness_source: str
    thickness_known: bool
    shape: str | None = (
        None  # gaussian, boxcar or mixed; None: not named (the default, or a reused network's)
    )
    shape_source: str | None = None  # None: no shape was named

    def facts(self) -> dict[str, Any]:
        """The sidecar keys: thickness_mm, thickness_source and, when a shape was named, profile_source."""
        facts: dict[str, Any] = {"thickness_mm": self.thickness_mm, "thickness_source": self.thickness_source}
        if self.shape_source is not None:
            facts["profile_source"] = self.shape_source
        return facts
