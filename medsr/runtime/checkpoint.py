"""Checkpoints as one ``.safetensors`` file: the weights are the tensors, the facts are JSON metadata.

The safetensors metadata key ``"medsr"`` holds a JSON object with ``kind`` (``"trained"`` from
``medsr train``; ``"selfsup"`` for a kept per-scan network), ``architecture`` (a key of
:data:`medsr.models.MODELS`), ``model_args``, ``factor_range``, ``axis_convention``,
``normalisation``, ``data_summary``, ``config``, ``medsr_version`` and ``step``.

Written by ``medsr train`` and by selfsup's ``--save-model``; read by ``medsr infer --model`` and by
training's ``--init`` (optimizer state for ``--resume`` is :mod:`medsr.training.train_state`). Nothing
here ever unpickles: a file is read only after
its safetensors header has been checked, so a pickle (``torch.save``) passed as a checkpoint is
refused before any byte of it is interpreted.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsr.errors import MedsrError

META_KEY = "medsr"
KINDS = ("trained", "selfsup")
#: A safetensors JSON header larger than this is not a medsr checkpoint.
MAX_HEADER_BYTES = 64 * 1024 * 1024


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s weights and ``meta`` (JSON-able, with ``kind`` and ``architecture``) atomically."""
    from safetensors.torch import save_file

    from medsr.io.atomic import atomic_output

    if meta.get("kind") not in KINDS or "architecture" not in meta:
        raise ValueError(f"checkpoint meta needs kind in {KINDS} and an architecture, got {sorted(meta)}")
    module = model.module if hasattr(model, "module") else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, default=plain_json)})
    return path


def check_safetensors(path: Path) -> dict[str, Any]:
    """The parsed safetensors header of ``path``; MedsrError for anything else (pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise MedsrError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        ok = 2 <= n <= min(size - 8, MAX_HEADER_BYTES)
        raw = fh.read(n) if ok else b""
    header = None
    if ok and raw[:1] == b"{":
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        raise MedsrError(f"{path}: not a safetensors checkpoint ({_guess(head)}); {_REFUSAL}")
    return header


def read_meta(path: Path) -> dict[str, Any]:
    """The ``"medsr"`` JSON of a checkpoint, from its header only (no tensor is read)."""
    header = check_safetensors(path)
    text = (header.get("__metadata__") or {}).get(META_KEY)
    if not isinstance(text, str):
        raise MedsrError(
            f"{path}: a safetensors file without medsr metadata (key {META_KEY!r}); medsr reads checkpoints "
            "written by medsr train (or medsr infer --save-model)"
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise MedsrError(f"{path}: the medsr metadata is not valid JSON ({err.msg})") from None
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS:
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise MedsrError(f"{path}: unknown checkpoint kind {kind!r}; medsr knows {', '.join(KINDS)}")
    return meta


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a checkpoint; the header is checked before safetensors opens the file."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for truncated data
        raise MedsrError(
            f"{path}: the checkpoint's tensors cannot be read ({err}); the file is damaged"
        ) from None
    return tensors, meta


def build_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor], source: Path | str = "") -> nn.Module:
    """The network named by ``meta`` with ``tensors`` loaded (strict), in eval mode."""
    from medsr.models import MODELS

    name = meta.get("architecture")
    if name not in MODELS:
        raise MedsrError(f"{source}: architecture {name!r} is not one of {', '.join(MODELS)}; upgrade medsr?")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(meta.get("model_args") or {}).items()}
    try:
        model = MODELS[name](**args)
        model.load_state_dict(tensors, strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        message = " ".join(str(err).split())[:400]
        raise MedsrError(f"{source}: weights do not fit {name}({args}): {message}") from None
    return model.eval()


def load_trained(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint meta) of a ``kind: trained`` checkpoint."""
    path = Path(path)
    meta = read_meta(path)
    if meta["kind"] != "trained":
        raise MedsrError(
            f"{path} is a {meta['kind']!r} checkpoint (a per-scan self-supervised network); medsr infer --model "
            "applies 'trained' checkpoints written by medsr train"
        )
    tensors, meta = read_checkpoint(path)
    return build_model(meta, tensors, path), meta


_REFUSAL = (
    "medsr never unpickles checkpoints (loading a pickle can run arbitrary code); pass a .safetensors "
    "checkpoint written by medsr train"
)


def _guess(head: bytes) -> str:
    if head[:1] == b"\x80":
        return "it looks like a Python pickle, e.g. from torch.save"
    if head[:2] == b"PK":
        return "it looks like a zip archive, e.g. a torch.save .pt/.pth file"
    return "its header is not a safetensors header"


def plain_json(value: Any) -> Any:
    """``json.dumps`` default for checkpoint metadata: tuples, sets, paths, numpy/torch scalars, mappings."""
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "items"):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")
