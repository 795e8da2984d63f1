"""The training loop on a tiny synthetic set: loss goes down, run files, resume gives identical weights."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medsr.errors import MedsrError
from medsr.runtime.checkpoint import read_checkpoint, read_meta
from medsr.training import loop
from medsr.training.config import config_to_dict, load_config
from medsr.training.data import PatchDataset, cached_dataset, manifest_items
from medsr.training.losses import SRLoss
from tests.helpers.train import tiny_overrides, write_tiny_set


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_set(tmp_path_factory.mktemp("tiny"))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def test_train_patches_are_paired_and_deterministic(manifest: Path) -> None:
    """Same (seed, epoch, index) -> the same sample; HR slices sit where the positions say in the LR patch."""
    config = load_config(None, [*tiny_overrides(manifest), "simulation.flips=false", "simulation.noise=null"])
    data = PatchDataset(cached_dataset(manifest_items(config, "train"), config), config)
    a, b = data[1], data[1]
    assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["positions"], b["positions"])
    data.set_epoch(1)
    assert not torch.equal(data[1]["hr"], a["hr"]) or not torch.equal(data[1]["lr"], a["lr"])
    lr, hr, pos, ratio = a["lr"][0], a["hr"][0], a["positions"], a["ratio"]
    assert hr.shape[:2] == lr.shape[:2] == (12, 12) and hr.shape[2] == pos.numel()
    np.testing.assert_allclose(
        np.diff(pos.numpy()), 1.0 / ratio, rtol=1e-4
    )  # one HR slice = 1/ratio LR slice
    assert pos.min() >= -0.5 and pos.max() <= lr.shape[2] - 0.5  # every HR slice lies inside the slabs
    # each LR slice is a (profile-weighted) average of the HR slices around it: the nearest HR slices agree best
    k = int(round(float(pos[len(pos) // 2])))
    nearest = int(torch.argmin((pos - k).abs()))
    errors = [(lr[..., k] - hr[..., j]).abs().mean() for j in range(hr.shape[2])]
    assert int(np.argmin(errors)) in range(nearest - int(ratio), nearest + int(ratio) + 1)


def test_train_steps_lower_the_loss(manifest: Path, tmp_path: Path) -> None:
    overrides = [
        *tiny_overrides(manifest, steps=30, model="shuffle3d"),
        "model.args={features: 8, blocks: 1, factor: 4}",
        "simulation.thickness_range=[3, 3]",
        "train.val_every=10",
    ]
    config = load_config(None, overrides)
    data = PatchDataset(cached_dataset(manifest_items(config, "train"), config), config)
    samples = []
    for epoch in range(100, 106):  # fresh draws, not the ones trained on
        data.set_epoch(epoch)
        samples += [data[i] for i in range(len(data))]
    criterion = SRLoss()

    def loss_of(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(
                np.mean([criterion(model(s["lr"][None], s["positions"]), s["hr"][None]) for s in samples])
            )

    from medsr.training.run_setup import build_model

    before = loss_of(build_model(config))
    summary = loop.train(config, tmp_path / "run", progress=False)
    tensors, meta = read_checkpoint(tmp_path / "run" / "last.safetensors")
    model = build_model(config)
    model.load_state_dict(tensors)
    after = loss_of(model)
    assert after < 0.97 * before, (before, after)
    assert summary["steps"] == 30 and summary["world_size"] == 1
    val = summary["final_validation"]
    assert val["val_psnr"] > val["val_psnr_cubic"] + 0.1  # the untrained network is exactly cubic
    # run folder: resolved config, metrics, best and last checkpoints with their facts
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text()) == config_to_dict(config)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert rows[9]["val_psnr"] and rows[9]["val_psnr_cubic"] and not rows[8]["val_psnr"]
    assert (run / "best.safetensors").exists() and (run / "last.state.safetensors").exists()
    assert meta["kind"] == "trained" and meta["architecture"] == "shuffle3d" and meta["step"] == 30
    assert meta["factor_range"] == [3.0, 3.0] and meta["config"] == config_to_dict(config)
    assert meta["normalisation"]["mode"] == "percentile" and meta["medsr_version"]
    assert meta["data_summary"]["train_volumes"] == 2 and meta["data_summary"]["val_volumes"] == 1
    assert read_meta(run / "best.safetensors")["validation"]["val_psnr"] == pytest.approx(
        summary["best_val_psnr"]
    )


def test_train_resume_gives_identical_weights(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [
        *tiny_overrides(manifest, steps=6, model="shuffle3d"),
        "train.val_every=3",
        "train.schedule=cosine",
    ]
    config = load_config(None, overrides)
    loop.train(config, tmp_path / "straight", progress=False)

    real_step = loop._step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # after the step-3 checkpoint, during step 5
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(loop, "_step", real_step)
    assert read_meta(tmp_path / "resumed" / "last.safetensors")["step"] == 3
    with pytest.raises(MedsrError, match="already holds a run"):
        loop.train(config, tmp_path / "resumed", progress=False)
    loop.train(config, tmp_path / "resumed", resume=True, progress=False)
    a, b = (
        _weights(tmp_path / "straight" / "last.safetensors"),
        _weights(tmp_path / "resumed" / "last.safetensors"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "resumed" / "metrics.csv").open())]
    assert steps == [1, 2, 3, 4, 5, 6]  # rows of the interrupted step 4 were dropped, not duplicated


def test_train_init_fine_tunes_from_a_checkpoint(manifest: Path, tmp_path: Path) -> None:
    config = load_config(None, tiny_overrides(manifest, steps=2))
    loop.train(config, tmp_path / "first", progress=False)
    source = _weights(tmp_path / "first" / "last.safetensors")
    from medsr.training.run_setup import build_model

    model = build_model(config, tmp_path / "first" / "last.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key])
    other = load_config(None, [*tiny_overrides(manifest, steps=2), "model.args={features: 5, depth: 3}"])
    with pytest.raises(MedsrError, match="set model.name/model.args to match"):
        build_model(other, tmp_path / "first" / "last.safetensors")
    shutil.rmtree(tmp_path / "first")


def test_train_refuses_factors_beyond_a_learned_upsampling(manifest: Path, tmp_path: Path) -> None:
    config = load_config(
        None, [*tiny_overrides(manifest, model="shuffle3d"), "simulation.thickness_range=[2, 6]"]
    )
    with pytest.raises(MedsrError, match="beyond shuffle3d's learned factor 4"):
        loop.train(config, tmp_path / "run", progress=False)
