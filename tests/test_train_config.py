"""Training configs: YAML into frozen typed objects, unknown keys and bad values named, --set overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from medsr.errors import MedsrError
from medsr.training.config import Config, config_to_dict, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_train_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, Config)
    assert Path(config.data.manifest).is_absolute()
    assert isinstance(config.train.lr, float) and isinstance(config.data.patch_size, tuple)
    # the resolved config survives a YAML round trip unchanged
    again = load_config(
        None,
        [
            f"{s}.{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"
            for s, sec in config_to_dict(config).items()
            for k, v in sec.items()
        ],
    )
    assert config_to_dict(again) == config_to_dict(config)


def test_train_config_is_frozen() -> None:
    config = load_config(CONFIGS[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.model.args["features"] = 3  # type: ignore[index]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("trian: {steps: 3}\ndata: {manifest: m.csv}", "'trian'"),
        ("train: {lrr: 0.1}\ndata: {manifest: m.csv}", "'train.lrr'"),
        ("data: {manifest: m.csv, patch: [1, 2, 3]}", "'data.patch'"),
        ("model: {name: shuffle3d, args: {featurs: 8}}\ndata: {manifest: m.csv}", "'model.args.featurs'"),
    ],
)
def test_train_config_unknown_keys_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(MedsrError, match=named):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.steps=many", "train.steps must be an integer"),
        ("train.amp=3", "train.amp must be true or false"),
        ("data.patch_size=[8, 8]", "data.patch_size must list 3 values"),
        ("train.schedule=linear", "train.schedule"),
        ("model.name=unet9000", "model.name 'unet9000' is not one of"),
        ("simulation.thickness_range=[5, 2]", "thickness_range"),
        ("simulation.noise=rician", "noise_range"),
        ("train.lr=-1", "train.lr"),
        ("lr=1", "section.key=value"),
    ],
)
def test_train_config_bad_values_are_named(tmp_path: Path, override: str, named: str) -> None:
    path = _write(tmp_path, "data: {manifest: m.csv}")
    with pytest.raises(MedsrError, match=named):
        load_config(path, [override])


def test_train_config_overrides_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    path = _write(tmp_path, "data: {manifest: sub/m.csv}\ntrain: {lr: 0.01}")
    config = load_config(path, ["train.lr=1e-4", "model.args.features=8", "data.val_crop=[20, 20, 20]"])
    assert config.train.lr == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; it is still a float
    assert config.model.args["features"] == 8
    assert config.data.val_crop == (20, 20, 20)
    assert config.data.manifest == str((tmp_path / "sub" / "m.csv").resolve())  # relative to the YAML file
    monkeypatch.chdir(tmp_path / "sub")
    moved = load_config(path, ["data.manifest=other.csv"])
    assert moved.data.manifest == str((tmp_path / "sub" / "other.csv").resolve())  # --set: relative to cwd


def test_train_config_needs_manifest() -> None:
    with pytest.raises(MedsrError, match="data.manifest is empty"):
        load_config(None)
