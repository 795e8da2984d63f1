"""Keep and reuse a per-scan self-supervised network: weights as safetensors, facts as JSON (no pickle).

``net.safetensors`` holds the state dict; ``net.json`` beside it holds the architecture name and
arguments (a key of :data:`medsr.models.MODELS`) and the acquisition it was trained for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from medsr.errors import MedsrError
from medsr.models import MODELS

FORMAT = "medsr-selfsup"
VERSION = 1


def model_paths(path: Path) -> tuple[Path, Path]:
    """(weights, facts) paths for a model path given with or without the ``.safetensors`` suffix."""
    path = Path(path)
    weights = path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")
    return weights, weights.with_suffix(".json")


def save_selfsup_model(
    path: Path, net: torch.nn.Module, architecture: str, kwargs: dict, facts: dict
) -> Path:
    """Write ``net`` and its description; returns the weights path."""
    weights, info = model_paths(path)
    if not weights.parent.exists():
        raise MedsrError(f"{weights.parent}: folder for --save-model does not exist; create it first")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(weights), metadata={"format": FORMAT, "architecture": architecture})
    doc = {"format": FORMAT, "version": VERSION, "architecture": architecture, "kwargs": kwargs, **facts}
    info.write_text(json.dumps(doc, indent=2, default=_plain) + "\n")
    return weights


def load_selfsup_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a network written by :func:`save_selfsup_model`; returns (net, its JSON facts)."""
    weights, info = model_paths(path)
    if not weights.is_file() or not info.is_file():
        raise MedsrError(
            f"{path}: a self-supervised model is a .safetensors file with a .json beside it "
            f"(looked for {weights.name} and {info.name}); write one with --save-model"
        )
    try:
        doc = json.loads(info.read_text())
    except json.JSONDecodeError as exc:
        raise MedsrError(f"{info}: not valid JSON ({exc}); write the model again with --save-model") from exc
    if doc.get("format") != FORMAT or doc.get("architecture") not in MODELS:
        raise MedsrError(
            f"{info}: not a medsr self-supervised model (format {doc.get('format')!r}, architecture "
            f"{doc.get('architecture')!r}; known: {', '.join(MODELS)})"
        )
    kwargs = dict(doc["kwargs"])
    if "kernel" in kwargs:
        kwargs["kernel"] = tuple(kwargs["kernel"])
    net = MODELS[doc["architecture"]](**kwargs)
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        raise MedsrError(f"{weights}: weights do not match {info.name} ({exc})") from exc
    return net, doc


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a model description")
