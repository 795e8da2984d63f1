"""Slice profile names, kept free of heavy imports: the CLI reads them when it starts.

The profiles themselves (their cumulative distributions and slab weights) are in
:mod:`medsr.transforms.functional`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    checks the slices themselves and refines the profile (:meth:`with_estimate`,
    :mod:`medsr.inference.selfsup.thickness`), which sets ``thickness_checked``.
    """

    thickness_mm: float  # FWHM
    thickness_source: str
    thickness_known: bool
    shape: str | None = (
        None  # gaussian, boxcar or mixed; None: not named (the default, or a reused network's)
    )
    shape_source: str | None = None  # None: no shape was named
    thickness_checked: bool = False  # the slices were checked (thickness_estimate_mm)
    thickness_estimate_mm: float | None = None  # the check's estimate; None: too little anatomy to tell

    def facts(self) -> dict[str, Any]:
        """The sidecar keys: thickness_mm, thickness_source, profile_source when a shape was named, and
        thickness_estimate_mm once the slices were checked."""
        facts: dict[str, Any] = {"thickness_mm": self.thickness_mm, "thickness_source": self.thickness_source}
        if self.shape_source is not None:
            facts["profile_source"] = self.shape_source
        if self.thickness_checked:
            facts["thickness_estimate_mm"] = self.thickness_estimate_mm
        return facts

    def with_shape(self, shape: str) -> SliceProfile:
        """This profile with the shape a method settled on (its default, a reused network's); the source
        stays: the shape was not named."""
        return replace(self, shape=shape)

    def with_estimate(self, estimate_mm: float | None, thickness_mm: float, source: str) -> SliceProfile:
        """This profile after the slices were checked: ``estimate_mm`` (rounded to 0.001 mm as the sidecar
        records it; None: too little anatomy to tell) and the thickness the check settled on, with its source."""
        rounded = None if estimate_mm is None else round(estimate_mm, 3)
        return replace(
            self,
            thickness_mm=thickness_mm,
            thickness_source=source,
            thickness_checked=True,
            thickness_estimate_mm=rounded,
        )
