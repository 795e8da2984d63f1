"""Network architectures: plain ``nn.Module`` classes named in one explicit mapping.

``MODELS`` maps the name stored in configs and checkpoints to the class; add new families here.
"""

from __future__ import annotations

from medsr.models.deepresolve3d import DeepResolve3d
from medsr.models.shuffle3d import Shuffle3d
from medsr.models.slice_sr2d import SliceSR2d

MODELS = {"slice_sr2d": SliceSR2d, "deepresolve3d": DeepResolve3d, "shuffle3d": Shuffle3d}

__all__ = ["MODELS", "DeepResolve3d", "Shuffle3d", "SliceSR2d"]
