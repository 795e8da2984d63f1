"""Batch inference: skip finished scans, carry on after a failure, shards, manifests; and the Upscale transforms."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose
from typer.testing import CliRunner

from medsr.cli.main import app
from medsr.errors import MedsrError
from medsr.inference.transforms import Upscale, Upscaled
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of
from medsr.jobs.infer import select_shard
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        affine = make_affine((1.0, 1.0, 3.0), rng=np.random.default_rng(i))
        nib.save(nib.Nifti1Image(blob_volume((8, 9, 5 + i)), affine), str(folder / f"s{i}.nii.gz"))
    (folder / "broken.nii.gz").write_bytes(b"not a nifti at all" * 20)
    return folder


def test_batch_skips_continues_and_reports(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = runner.invoke(app, ["infer", str(scans), "-o", str(out), "--method", "linear", "--factor", "3"])
    assert first.exit_code == 1, first.output
    assert "3 written, 0 skipped" in first.stdout and "1 failed" in first.stdout
    assert "broken.nii.gz" in first.stderr
    for i in range(3):
        assert nib.load(str(out / f"s{i}_medsr.nii.gz")).shape == (8, 9, 3 * (5 + i))
    report = json.loads((out / "medsr_batch.json").read_text())
    assert len(report["done"]) == 3 and report["failed"][0]["input"].endswith("broken.nii.gz")
    (scans / "broken.nii.gz").unlink()
    second = runner.invoke(app, ["infer", str(scans), "-o", str(out), "--method", "linear", "--factor", "3"])
    assert second.exit_code == 0, second.output
    assert "0 written, 3 skipped" in second.stdout


def test_shards_partition_the_list(scans: Path, tmp_path: Path) -> None:
    items = [Path(f"{i}") for i in range(7)]
    parts = [select_shard(items, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(p for part in parts for p in part) == sorted(items)
    assert parts[0] == [Path("0"), Path("3"), Path("6")]
    with pytest.raises(MedsrError, match="K/N"):
        select_shard(items, "two")
    with pytest.raises(MedsrError, match="between 1 and N"):
        select_shard(items, "4/3")
    (scans / "broken.nii.gz").unlink()
    out = tmp_path / "sharded"
    result = runner.invoke(
        app, ["infer", str(scans), "-o", str(out), "--method", "nearest", "--shard", "2/2"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["s1_medsr.nii.gz"]
    assert (out / "medsr_batch_2_of_2.json").exists()


def test_manifest_batch(scans: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,subject,split\nscans/s0.nii.gz,a,test\nscans/s2.nii.gz,b,test\n")
    out = tmp_path / "from_manifest"
    result = runner.invoke(
        app, ["infer", str(manifest), "-o", str(out), "--method", "linear", "--factor", "2"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["s0_medsr.nii.gz", "s2_medsr.nii.gz"]


def test_upscale_transforms_compose(scans: Path) -> None:
    volume = load_volume(scans / "s0.nii.gz")
    direct = Upscale(factor=2, method="linear")(volume)
    assert direct.shape == (1, 8, 9, 10)
    np.testing.assert_allclose(
        affine_of(direct)[:3, 3], (affine_of(volume) @ [0, 0, -0.25, 1])[:3], atol=1e-9
    )
    out = Compose([Upscaled(keys="image", factor=2, method="linear")])({"image": volume, "label": 1})
    np.testing.assert_array_equal(out["image"].numpy(), direct.numpy())
    assert out["label"] == 1
