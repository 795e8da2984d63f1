"""Everything a run needs before its first step: folder, data, model, and the checkpoint facts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsr.errors import MedsrError, MedsrWarning
from medsr.training import distributed as D
from medsr.training.config import Config, config_to_dict
from medsr.training.data import (
    PatchDataset,
    cached_dataset,
    factor_ranges,
    manifest_items,
    validation_pair,
)

AXIS_CONVENTION = (
    "slice axis last: the network maps (B, 1, X, Y, m) thick slices and (n,) float slice positions "
    "(indices into m) to (B, 1, X, Y, n); medsr moves the upscaled axis there and back"
)
#: Files that mark a folder as holding a run.
RUN_FILES = ("config.yaml", "last.safetensors", "metrics.csv")


@dataclass
class RunData:
    """Training samples, validation pairs (rank 0) and the facts stored in every checkpoint."""

    train: PatchDataset
    val_pairs: list[dict[str, Any]] = field(default_factory=list)
    factor_range: list[float] = field(default_factory=list)
    thickness_ratio_range: list[float] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def prepare_run_dir(run_dir: Path, *, resume: bool) -> None:
    """A new run needs an empty (or new) folder; a resumed one needs the files of a run."""
    if resume:
        missing = [
            f
            for f in ("config.yaml", "last.safetensors", "last.state.safetensors")
            if not (run_dir / f).exists()
        ]
        if missing:
            raise MedsrError(
                f"{run_dir}: cannot resume, {', '.join(missing)} missing (was a checkpoint written?)"
            )
        return
    if any((run_dir / f).exists() for f in RUN_FILES):
        raise MedsrError(
            f"{run_dir} already holds a run; continue it with --resume or choose another -o folder"
        )
    if not run_dir.parent.exists():
        raise MedsrError(f"{run_dir.parent}: folder does not exist; create it first")
    run_dir.mkdir(exist_ok=True)


def prepare_data(config: Config, dist: D.DistInfo) -> RunData:
    """Manifest -> cached datasets -> patch dataset and (on rank 0) degraded validation volumes."""
    train_items = manifest_items(config, config.data.train_split)
    if not train_items:
        raise MedsrError(
            f"{config.data.manifest} lists no volumes with split {config.data.train_split!r}; check the split "
            "column or data.train_split"
        )
    val_items = manifest_items(config, config.data.val_split)
    if not val_items and dist.is_main:
        warnings.warn(
            f"{config.data.manifest} lists no volumes with split {config.data.val_split!r}: no validation, "
            "so no best.safetensors (last.safetensors is still written)",
            MedsrWarning,
            stacklevel=3,
        )
    base = cached_dataset(train_items, config)
    volumes = [base[i]["hr"] for i in range(len(base))]  # type: ignore[arg-type]
    factors, thickness = factor_ranges(volumes, config)
    learned = _learned_factor(config)
    if learned is not None and factors[1] > learned * 1.0001:
        raise MedsrError(
            f"the simulation reaches factor {factors[1]:.3g} on this data, beyond {config.model.name}'s learned "
            f"factor {learned}: raise model.args.factor or narrow simulation.spacing_range"
        )
    val_pairs: list[dict[str, Any]] = []
    if dist.is_main and val_items:
        val_base = cached_dataset(val_items, config)
        val_pairs = [validation_pair(val_base[i], config) for i in range(len(val_base))]  # type: ignore[arg-type]
    spacings = [float(s) for v in volumes for s in _voxel_sizes(v)]
    summary = {
        "manifest": str(config.data.manifest),
        "train_volumes": len(train_items),
        "val_volumes": len(val_items),
        "train_subjects": len({i["name"].split("/")[0] for i in train_items}),
        "modalities": sorted({i["modality"] for i in train_items if i["modality"]}),
        "hr_voxel_size_mm": [round(min(spacings), 4), round(max(spacings), 4)],
    }
    return RunData(PatchDataset(base, config, rank=dist.rank), val_pairs, factors, thickness, summary)


def build_model(config: Config, init: Path | None = None) -> nn.Module:
    """The config's network, initialised from ``config.train.seed`` (or from ``init``'s weights)."""
    from medsr.models import MODELS

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        model = MODELS[config.model.name](**dict(config.model.args))
    if init is not None:
        from medsr.runtime.checkpoint import load_trained

        source, meta = load_trained(Path(init))
        wanted = (config.model.name, config_to_dict(config.model.args))
        found = (meta["architecture"], meta.get("model_args", {}))
        if wanted != found:
            raise MedsrError(
                f"--init {init}: the checkpoint is {found[0]}({found[1]}) but the config asks for "
                f"{wanted[0]}({wanted[1]}); set model.name/model.args to match it"
            )
        model.load_state_dict(source.state_dict())
    return model


def checkpoint_meta(config: Config, data: RunData, step: int, val: dict[str, float]) -> dict[str, Any]:
    """The JSON stored under ``"medsr"`` in a trained checkpoint."""
    from medsr import __version__

    return {
        "kind": "trained",
        "architecture": config.model.name,
        "model_args": config_to_dict(config.model.args),
        "factor_range": data.factor_range,
        "thickness_ratio_range": data.thickness_ratio_range,
        "axis_convention": AXIS_CONVENTION,
        "normalisation": config_to_dict(config.normalisation),
        "data_summary": data.summary,
        "config": config_to_dict(config),
        "medsr_version": __version__,
        "step": step,
        "validation": val,
    }


def _learned_factor(config: Config) -> int | None:
    """The integer sub-slice factor of a network that learns its upsampling (None: factor-free)."""
    import inspect

    from medsr.models import MODELS

    param = inspect.signature(MODELS[config.model.name]).parameters.get("factor")
    if param is None:
        return None
    return int(dict(config.model.args).get("factor", param.default))


def _voxel_sizes(volume: Any) -> list[float]:
    from medsr import geometry
    from medsr.io.volume import affine_of

    return list(geometry.voxel_sizes(affine_of(volume)))
