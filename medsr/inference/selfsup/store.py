"""Keep and reuse a per-scan self-supervised network as a medsr checkpoint (``kind: selfsup``).

The same single-file safetensors format as ``medsr train`` (:mod:`medsr.runtime.checkpoint`): the
weights are the tensors, the header's ``"medsr"`` metadata holds the architecture, its arguments and
the acquisition the network was trained for. Nothing is unpickled when loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medsr.errors import MedsrError
from medsr.runtime.checkpoint import build_model, read_checkpoint, save_checkpoint


def save_selfsup_model(
    path: Path, net: torch.nn.Module, architecture: str, kwargs: dict, facts: dict
) -> Path:
    """Write ``net`` with its description to ``path`` (a ``.safetensors`` file, written atomically)."""
    from medsr import __version__

    path = Path(path)
    if not path.parent.exists():
        raise MedsrError(f"{path.parent}: folder for --save-model does not exist; create it first")
    meta = {
        "kind": "selfsup",
        "architecture": architecture,
        "model_args": kwargs,
        "medsr_version": __version__,
    }
    return save_checkpoint(path, net, {**meta, **facts})


def load_selfsup_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a network written by :func:`save_selfsup_model`; returns (net in eval mode, its metadata)."""
    tensors, meta = read_checkpoint(Path(path))
    if meta["kind"] != "selfsup":
        raise MedsrError(
            f"{path} is a {meta['kind']!r} checkpoint, not a per-scan self-supervised network; "
            "use it with medsr infer --model (method model)"
        )
    return build_model(meta, tensors, path), meta
