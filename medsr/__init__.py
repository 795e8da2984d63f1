"""medsr: through-plane super-resolution for thick-slice MRI and CT with exact spatial metadata.

Public API (imported lazily so that ``medsr --help`` starts fast)::

    from medsr import load_volume, save_volume, upscale, simulate_thick_slices
    from medsr import Upscale, Upscaled  # MONAI transforms around upscale
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_volume": "medsr.io.readers",
    "save_volume": "medsr.io.writers",
    "upscale": "medsr.inference.predict",
    "simulate_thick_slices": "medsr.transforms.array",
    "Upscale": "medsr.inference.transforms",
    "Upscaled": "medsr.inference.transforms",
    "MedsrError": "medsr.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medsr' has no attribute {name!r}")
