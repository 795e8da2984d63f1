"""Training configuration: YAML into frozen, typed dataclasses (docs/training.md lists every key).

``load_config(path, overrides)`` reads a YAML file, applies ``section.key=value`` overrides (values
parsed as YAML, so ``train.lr=1e-4`` is a float and ``data.val_crop=[64,64,64]`` a list), checks every
key and type, and returns a :class:`Config`. Unknown keys are errors that name the key. Relative
paths in a file are resolved against the file's folder, those given with ``--set`` against the
current folder. ``config_to_dict`` gives the resolved config back as plain data (saved beside every
run and inside every checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medsr.errors import MedsrError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture (a key of medsr.models.MODELS) and its constructor arguments."""

    name: str = "shuffle3d"
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    """Where the volumes come from and how patches are cut (sizes in voxels of the HR volume)."""

    manifest: str = ""
    train_split: str = "train"
    val_split: str = "val"
    cache: Literal["memory", "disk", "none"] = "memory"
    cache_dir: str | None = None
    num_workers: int = 0
    patch_size: tuple[int, int, int] = (48, 48, 64)
    val_crop: tuple[int, int, int] | None = None
    verify_sha256: bool = True


@dataclass(frozen=True)
class SimulationConfig:
    """Thick-slice degradation drawn on the fly (mm; see medsr.transforms.RandSimulateThickSlicesd)."""

    axes: tuple[str, ...] = ("S",)
    thickness_range: tuple[float, float] = (3.0, 5.0)
    spacing_range: tuple[float, float] | None = None
    profiles: tuple[str, ...] = ("gaussian",)
    noise: Literal["gaussian", "rician"] | None = None
    noise_range: tuple[float, float] | None = None
    noise_prob: float = 0.5
    flips: bool = True


@dataclass(frozen=True)
class NormalisationConfig:
    """Intensity map ``(x - offset) / scale``: per volume from percentiles, or fixed (e.g. HU)."""

    mode: Literal["percentile", "fixed", "none"] = "percentile"
    lower: float = 0.5
    upper: float = 99.5
    offset: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: AdamW, a warm-up then cosine or one-cycle schedule, L1 (+ SSIM) loss."""

    steps: int = 2000
    batch_size: int = 2
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_steps: int = 50
    min_lr_ratio: float = 0.01
    ssim_weight: float = 0.0
    amp: bool = True
    grad_clip: float | None = 1.0
    val_every: int = 250
    log_every: int = 10
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class InferenceConfig:
    """Sliding-window inference: in-plane window (voxels; the slice axis is always whole).

    Windows carry a halo of real context as wide as the network's receptive field, so tiling leaves
    no seams and ``overlap`` (a fraction of the window, blended evenly) is rarely needed.
    """

    roi_size: tuple[int, int] = (96, 96)
    overlap: float = 0.0
    sw_batch_size: int = 1


@dataclass(frozen=True)
class Config:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


#: Keys holding file-system paths (resolved against the YAML file's folder or the current folder).
PATH_KEYS = (("data", "manifest"), ("data", "cache_dir"))


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read ``path`` (YAML; None: all defaults), apply ``key=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
        _resolve_paths(raw, Path(path).resolve().parent)
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (MedsrError if missing, malformed or not a mapping)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MedsrError(f"{path}: cannot read the config ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise MedsrError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MedsrError(f"{path}: a config is a YAML mapping of sections (model, data, train...)")
    return data


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``section.key=value`` in the raw mapping; the value is parsed as YAML."""
    import yaml

    key, sep, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not sep or len(parts) < 2:
        raise MedsrError(f"--set {item!r} must look like section.key=value, e.g. train.lr=1e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    if tuple(parts[:2]) in PATH_KEYS and isinstance(value, str) and value:
        value = str(Path(value).expanduser().resolve())
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MedsrError(f"--set {item!r}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a raw mapping into a :class:`Config` (errors name the dotted key)."""
    config = _build(Config, raw, "")
    _check(config)
    return config


def config_to_dict(config: Any) -> Any:
    """Plain data (dicts, lists, numbers, strings) for YAML/JSON."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): config_to_dict(v) for k, v in config.items()}
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return config


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    import yaml

    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise MedsrError(f"config {where or 'file'} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise MedsrError(
            f"unknown config key {key!r}; known keys{' of ' + where if where else ''}: {', '.join(names)}"
        )
    values = {}
    for name in names:
        if name in raw:
            dotted = f"{where}.{name}" if where else name
            values[name] = _convert(raw[name], hints[name], dotted)
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(value, options[0], where)
    if origin is Literal:
        if value not in args:
            raise MedsrError(f"config {where} = {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        return _tuple(value, args, where)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise MedsrError(f"config {where} must be a mapping of keys, got {value!r}")
        return types.MappingProxyType(dict(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise MedsrError(f"config {where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MedsrError(f"config {where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MedsrError(f"config {where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise MedsrError(f"config {where} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {hint} at {where}")  # a bug in this module, not user input


def _tuple(value: Any, args: tuple, where: str) -> tuple:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(args) == 2 and args[1] is Ellipsis:
        if not items:
            raise MedsrError(f"config {where} must list at least one value")
        return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(items))
    if len(items) != len(args):
        raise MedsrError(f"config {where} must list {len(args)} values, got {value!r}")
    return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args, strict=True)))


def _resolve_paths(raw: dict[str, Any], folder: Path) -> None:
    for section, key in PATH_KEYS:
        node = raw.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
            p = Path(node[key]).expanduser()
            node[key] = str(p if p.is_absolute() else (folder / p).resolve())


def _check(c: Config) -> None:
    """Cross-field checks that a type cannot express."""
    from medsr.models import MODELS

    if c.model.name not in MODELS:
        raise MedsrError(f"config model.name {c.model.name!r} is not one of {', '.join(MODELS)}")
    _check_model_args(c.model)
    positive = {
        "train.steps": c.train.steps,
        "train.batch_size": c.train.batch_size,
        "train.val_every": c.train.val_every,
        "train.log_every": c.train.log_every,
        "inference.sw_batch_size": c.inference.sw_batch_size,
        "train.lr": c.train.lr,
    }
    for key, value in positive.items():
        if not value > 0:
            raise MedsrError(f"config {key} = {value} must be positive")
    if c.train.warmup_steps < 0 or c.data.num_workers < 0:
        raise MedsrError("config train.warmup_steps and data.num_workers must be >= 0")
    if min(c.data.patch_size) < 8 or min(c.inference.roi_size) < 8:
        raise MedsrError(
            f"config data.patch_size {c.data.patch_size} and inference.roi_size {c.inference.roi_size} "
            "must be at least 8 voxels along each axis"
        )
    if not 0.0 <= c.inference.overlap < 1.0:
        raise MedsrError(f"config inference.overlap = {c.inference.overlap} must lie in [0, 1)")
    s = c.simulation
    for key, pair in (("thickness_range", s.thickness_range), ("spacing_range", s.spacing_range)):
        if pair is not None and not 0 < pair[0] <= pair[1]:
            raise MedsrError(
                f"config simulation.{key} = {list(pair)} must be [low, high] with 0 < low <= high"
            )
    if s.noise is not None and s.noise_range is None:
        raise MedsrError(f"config simulation.noise = {s.noise!r} needs simulation.noise_range [low, high]")
    n = c.normalisation
    if n.mode == "percentile" and not 0 <= n.lower < n.upper <= 100:
        raise MedsrError(
            f"config normalisation lower/upper = {n.lower}/{n.upper} must satisfy 0 <= lower < upper <= 100"
        )
    if n.mode == "fixed" and not n.scale > 0:
        raise MedsrError(f"config normalisation.scale = {n.scale} must be positive")
    if not c.data.manifest:
        raise MedsrError(
            "config data.manifest is empty: name a manifest (.csv/.jsonl), see docs/manifests.md"
        )


def _check_model_args(model: ModelConfig) -> None:
    import inspect

    from medsr.models import MODELS

    params = inspect.signature(MODELS[model.name]).parameters
    for key in model.args:
        if key not in params:
            raise MedsrError(
                f"unknown config key 'model.args.{key}' for {model.name}; its arguments: {', '.join(params)}"
            )
    try:
        MODELS[model.name](**dict(model.args))
    except (TypeError, ValueError) as err:
        raise MedsrError(f"config model.args {dict(model.args)} do not build {model.name}: {err}") from None
