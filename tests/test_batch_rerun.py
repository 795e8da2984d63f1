"""Batch reruns: a scan is done only when its sidecar records the same input and the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medsr.cli.main import app
from medsr.io.naming import sidecar_path
from medsr.jobs.infer import infer_one
from medsr.jobs.options import InferOptions
from medsr.jobs.rerun import NOT_WRITTEN, is_finished
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(2):
        affine = make_affine((1.0, 1.1, 3.0), rng=np.random.default_rng(10 + i), flips=(1, -1, 1))
        nib.save(
            nib.Nifti1Image(blob_volume((8, 7, 5)).astype(np.int16), affine), str(folder / f"s{i}.nii.gz")
        )
    return folder


def _batch(scans: Path, out: Path, *extra: str) -> tuple[str, dict]:
    args = ["infer", str(scans), "-o", str(out), "--method", "linear", "--no-progress", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout, json.loads((out / "medsr_batch.json").read_text())


def test_factor_change_redoes_with_the_reason(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _batch(scans, out, "--factor", "2")
    stdout, report = _batch(scans, out, "--factor", "4")
    assert "2 written (2 redone), 0 skipped" in stdout
    assert "redone: s0.nii.gz (factor 2 -> 4)" in stdout
    assert report["redone"] == [
        {"input": str(scans / f"s{i}.nii.gz"), "reason": "factor 2 -> 4"} for i in range(2)
    ]
    assert nib.load(str(out / "s0_medsr.nii.gz")).shape == (8, 7, 20)
    assert json.loads((out / "s0_medsr.json").read_text())["settings"]["factor"] == 4


def test_same_settings_skip(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _batch(scans, out, "--factor", "2")
    stdout, report = _batch(scans, out, "--factor", "2")
    assert "0 written, 2 skipped" in stdout and "redone" not in stdout
    assert report["redone"] == [] and len(report["skipped"]) == 2


def test_changed_input_content_redoes(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _batch(scans, out, "--factor", "2")
    img = nib.load(str(scans / "s1.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 5, img.affine), str(scans / "s1.nii.gz"))
    stdout, report = _batch(scans, out, "--factor", "2")
    assert "1 written (1 redone), 1 skipped" in stdout
    assert "redone: s1.nii.gz (input changed)" in stdout
    assert [r["reason"] for r in report["redone"]] == ["input changed"]


def test_dtype_change_redoes(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _batch(scans, out, "--factor", "2")
    stdout, _ = _batch(scans, out, "--factor", "2", "--dtype", "input")
    assert "redone: s0.nii.gz (dtype default -> input)" in stdout
    assert nib.load(str(out / "s0_medsr.nii.gz")).get_data_dtype() == np.int16


def test_is_finished_reasons(scans: Path, tmp_path: Path) -> None:
    scan, output = scans / "s0.nii.gz", tmp_path / "s0_up.nii.gz"
    opts = InferOptions(method="nearest", factor=2.0)
    assert is_finished(output, scan, opts) == NOT_WRITTEN
    infer_one(scan, output, opts)
    assert is_finished(output, scan, opts) is None
    assert is_finished(output, scan, InferOptions(method="linear", spacing=1.5)) == (
        "method nearest -> linear; factor 2 -> default; spacing default -> 1.5"
    )
    sidecar = sidecar_path(output)
    doc = json.loads(sidecar.read_text())
    del doc["settings"]
    sidecar.write_text(json.dumps(doc))
    assert is_finished(output, scan, opts) == "no settings recorded"
    sidecar.unlink()
    assert is_finished(output, scan, opts) == "no sidecar, an interrupted run"


def test_a_changed_sidecar_beside_the_input_redoes(scans: Path, tmp_path: Path) -> None:
    """The input's JSON sidecar (e.g. a BIDS SliceThickness) shapes the result: editing it redoes the scan."""
    out = tmp_path / "out"
    (scans / "s0.json").write_text(json.dumps({"SliceThickness": 3.0}))
    _batch(scans, out, "--factor", "2")
    stdout, _ = _batch(scans, out, "--factor", "2")
    assert "0 written, 2 skipped" in stdout
    (scans / "s0.json").write_text(json.dumps({"SliceThickness": 2.0}))
    stdout, report = _batch(scans, out, "--factor", "2")
    assert "redone: s0.nii.gz (input sidecar changed)" in stdout and "1 skipped" in stdout
    assert report["redone"] == [{"input": str(scans / "s0.nii.gz"), "reason": "input sidecar changed"}]
    (scans / "s0.json").unlink()
    stdout, _ = _batch(scans, out, "--factor", "2")
    assert "redone: s0.nii.gz (input sidecar changed)" in stdout
