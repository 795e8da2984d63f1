"""Slice profile names, kept free of heavy imports: the CLI reads them when it starts.

The profiles themselves (their cumulative distributions and slab weights) are in
:mod:`medsr.transforms.functional`.
"""

from __future__ import annotations

#: Slice profile shapes medsr simulates and learns to undo.
PROFILES = ("gaussian", "boxcar")

#: The profile assumed when nothing names one.
DEFAULT_PROFILE = "gaussian"
