"""Optimizer and loss-scaler state for ``medsr train --resume``: ``<stem>.state.safetensors``.

The optimizer's tensors are the safetensors tensors; its parameter groups, scalar slots, the loss
scaler and the caller's extra facts are JSON under the metadata key ``"medsr_state"``. Read only after
:func:`medsr.runtime.checkpoint.check_safetensors` has checked the header (nothing is unpickled).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medsr.errors import MedsrError
from medsr.runtime.checkpoint import check_safetensors, plain_json

STATE_KEY = "medsr_state"


def state_path(path: Path) -> Path:
    """``run/last.safetensors`` -> ``run/last.state.safetensors``."""
    path = Path(path)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return path.with_name(f"{stem}.state.safetensors")


def save_train_state(
    path: Path, optimizer: torch.optim.Optimizer, scaler: Any, extra: dict[str, Any]
) -> Path:
    """Optimizer tensors as safetensors; its parameter groups, the scaler and ``extra`` as JSON."""
    from safetensors.torch import save_file

    from medsr.io.atomic import atomic_output

    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            key = f"state.{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    doc = {
        "param_groups": opt["param_groups"],
        "scalars": scalars,
        "scaler": scaler.state_dict() if scaler is not None else {},
        **extra,
    }
    target = state_path(path)
    with atomic_output(target, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(doc, default=plain_json)})
    return target


def load_train_state(path: Path, optimizer: torch.optim.Optimizer, scaler: Any) -> dict[str, Any]:
    """Restore what :func:`save_train_state` wrote; returns the whole JSON document (with ``extra``)."""
    from safetensors.torch import load_file

    target = state_path(path)
    header = check_safetensors(target)
    try:
        doc = json.loads((header.get("__metadata__") or {})[STATE_KEY])
    except (KeyError, json.JSONDecodeError):
        raise MedsrError(f"{target}: not a medsr training state (no {STATE_KEY!r} metadata)") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*load_file(str(target)).items(), *doc["scalars"].items()]:
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in doc["param_groups"]]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise MedsrError(f"{target}: optimizer state does not fit this model ({err})") from None
    if scaler is not None and doc.get("scaler"):
        scaler.load_state_dict(doc["scaler"])
    return doc
