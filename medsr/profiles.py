"""Slice profile names, kept free of heavy imports: the CLI reads them when it starts.

The profiles themselves (their cumulative distributions and slab weights) are in
:mod:`medsr.transforms.functional`.
"""

from __future__ import annotations

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
