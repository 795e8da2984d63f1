"""``medsr manifest build/check`` and ``medsr train`` / ``medsr infer --model`` through the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medsr import geometry
from medsr.cli.main import app
from medsr.io.manifest import read_manifest, verify_row
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of, make_volume
from medsr.io.writers import save_volume
from tests.helpers.train import tiny_overrides, write_tiny_set
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()
REPO = Path(__file__).parents[1]


def _nifti(path: Path, seed: int, shape=(12, 10, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = make_affine((1.0, 1.2, 1.5), rng=np.random.default_rng(seed))
    nib.save(nib.Nifti1Image(blob_volume(shape, np.random.default_rng(seed)), affine), str(path))


def test_train_manifest_build_splits_by_subject(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for s in range(1, 7):
        _nifti(data / f"sub-{s:02d}" / "anat" / f"sub-{s:02d}_T1w.nii.gz", s)
        _nifti(data / f"sub-{s:02d}" / "anat" / f"sub-{s:02d}_T2w.nii.gz", 10 + s)
    series = make_volume(
        blob_volume((12, 10, 6)).astype(np.int16), make_affine((0.9, 0.9, 3.0)), modality="CT"
    )
    (data / "sub-07" / "ct").mkdir(parents=True)
    save_volume(series, data / "sub-07" / "ct" / "series")  # a DICOM series folder
    (data / "sub-08").mkdir()
    (data / "sub-08" / "broken.nii.gz").write_bytes(b"not a nifti file")
    out = tmp_path / "m.csv"
    result = runner.invoke(
        app,
        ["manifest", "build", str(data), "-o", str(out), "--val", "0.2", "--test", "0.2", "--modality", "MR"],
    )
    assert result.exit_code == 0, result.output
    assert "13 volumes of 7 subjects" in result.output and "broken.nii.gz" in result.output
    rows = read_manifest(out)
    assert len(rows) == 13
    by_subject: dict[str, set[str]] = {}
    for row in rows:
        by_subject.setdefault(row.subject, set()).add(row.split)
        verify_row(row)  # path resolves against the manifest's folder and the sha256 matches
        assert not Path(out.read_text().splitlines()[1].split(",")[0]).is_absolute()
    assert all(len(splits) == 1 for splits in by_subject.values())  # a subject never straddles splits
    assert sorted(s for v in by_subject.values() for s in v).count("train") >= 3
    assert {"val", "test"} <= {s for v in by_subject.values() for s in v}
    ct = next(r for r in rows if r.subject == "sub-07")
    assert ct.modality == "CT" and ct.path.is_dir() and ct.shape == (12, 10, 6)
    np.testing.assert_allclose(ct.spacing, (0.9, 0.9, 3.0), rtol=1e-4)
    mr = next(r for r in rows if r.subject == "sub-01")
    assert mr.modality == "MR" and mr.shape == (12, 10, 8)
    jsonl = tmp_path / "m.jsonl"
    assert (
        runner.invoke(app, ["manifest", "build", str(data), "-o", str(jsonl), "--no-sha256"]).exit_code == 0
    )
    assert [r.path for r in read_manifest(jsonl)] == [r.path for r in rows]
    result = runner.invoke(app, ["manifest", "build", str(data), "-o", str(out)])
    assert result.exit_code == 2 and "already exists" in result.output


def test_train_offline_manifest_resolves_from_nilearn() -> None:
    rows = read_manifest(REPO / "data_manifests" / "mni152_offline.csv")
    assert {r.split for r in rows} == {"train", "val"}
    for row in rows:
        assert row.path.is_file() and "nilearn" in row.path.parts
        assert row.shape == (197, 233, 189) and row.spacing == (1.0, 1.0, 1.0)
    result = runner.invoke(app, ["manifest", "check", str(REPO / "data_manifests" / "mni152_offline.csv")])
    assert result.exit_code == 0 and "3 of 3 volumes ok" in result.output


def test_train_cli_trains_resumes_and_serves_infer(tmp_path: Path) -> None:
    manifest = write_tiny_set(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text("train: {device: cpu}\n")
    sets = [a for item in tiny_overrides(manifest, steps=2, model="shuffle3d") for a in ("--set", item)]
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "-o", str(run), "--no-progress", *sets])
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output and "validation PSNR" in result.output
    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.steps=3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output
    # a thick-slice scan on an oblique grid, upscaled x3 by the checkpoint
    scan = tmp_path / "thick.nii.gz"
    affine = make_affine((1.0, 1.0, 3.0), rng=np.random.default_rng(5), flips=(1, 1, -1))
    nib.save(nib.Nifti1Image(blob_volume((20, 18, 7)) - 500.0, affine), str(scan))
    out = tmp_path / "sr.nii.gz"
    result = runner.invoke(
        app, ["infer", str(scan), "--model", str(run / "best.safetensors"), "-o", str(out), "--factor", "3"]
    )
    assert result.exit_code == 0, result.output
    sr = load_volume(out)
    shape, expected = geometry.upscaled_grid((20, 18, 7), affine, 2, 3.0)
    assert tuple(sr.shape[1:]) == shape
    np.testing.assert_allclose(affine_of(sr), expected, atol=1e-5)
    assert abs(float(sr.mean()) - float(np.asarray(nib.load(str(scan)).dataobj).mean())) < 5.0  # input units
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["method"] == "model" and sidecar["architecture"] == "shuffle3d"
    result = runner.invoke(
        app, ["infer", str(scan), "--model", str(run / "best.safetensors"), "--factor", "8"]
    )
    assert result.exit_code == 2 and "trained for factors 2 to 3" in result.output


def test_train_cli_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("data: {manifest: m.csv}\ntrain: {stpes: 3}\n")
    result = runner.invoke(app, ["train", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "unknown config key 'train.stpes'" in result.output
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2 and "-o RUN_FOLDER" in result.output
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil.write_bytes(pickle.dumps(Evil()))
    scan = tmp_path / "scan.nii.gz"
    _nifti(scan, 3)
    result = runner.invoke(app, ["infer", str(scan), "--model", str(evil), "--factor", "2"])
    assert result.exit_code == 2 and "never unpickles" in result.output
    assert not marker.exists()


@pytest.mark.parametrize("command", [["train", "--help"], ["manifest", "build", "--help"]])
def test_train_cli_help(command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 0 and "Usage" in result.output
