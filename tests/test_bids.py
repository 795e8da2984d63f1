"""``medsr bids``: the BIDS App on a small dataset made here (two subjects, one with a session)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medsr import __version__
from medsr.cli.bids import spread_values
from medsr.cli.main import app
from medsr.errors import MedsrError
from medsr.jobs.bids import check_output_dir
from medsr.jobs.bids_layout import output_name, parse_name
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()

T1 = "sub-01/anat/sub-01_T1w.nii.gz"
T2 = "sub-02/ses-1/anat/sub-02_ses-1_acq-ax_run-1_T2w.nii.gz"
FLAIR = "sub-02/ses-1/anat/sub-02_ses-1_rec-norm_FLAIR.nii"
OUT_T1 = "sub-01/anat/sub-01_rec-medsr_T1w.nii.gz"
OUT_T2 = "sub-02/ses-1/anat/sub-02_ses-1_acq-ax_rec-medsr_run-1_T2w.nii.gz"
OUT_FLAIR = "sub-02/ses-1/anat/sub-02_ses-1_rec-normmedsr_FLAIR.nii.gz"


def _image(
    root: Path, rel: str, spacing: tuple[float, float, float], seed: int, meta: dict | None = None
) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = make_affine(spacing, rng=np.random.default_rng(seed), flips=(-1, 1, 1))
    nib.save(nib.Nifti1Image(blob_volume((9, 8, 5)).astype(np.int16), affine), str(path))
    if meta is not None:
        (root / rel.replace(".nii.gz", ".json").replace(".nii", ".json")).write_text(json.dumps(meta))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.9.0"}))
    (root / "T2w.json").write_text(json.dumps({"SliceThickness": 3.5, "MRAcquisitionType": "2D"}))
    _image(root, T1, (1.0, 1.1, 3.0), 1, {"SliceThickness": 2.5, "MRAcquisitionType": "2D"})
    _image(root, "sub-01/anat/sub-01_acq-iso_T1w.nii.gz", (1.0, 1.0, 1.02), 2)
    _image(root, "sub-01/anat/sub-01_acq-mprage_T1w.nii.gz", (1.0, 1.0, 1.6), 3, {"MRAcquisitionType": "3D"})
    _image(root, T2, (0.9, 0.9, 4.0), 4)
    _image(root, FLAIR, (1.0, 0.9, 3.0), 5, {"SpacingBetweenSlices": 3.6})
    return root


def _bids(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["bids", *args, "--no-progress"])
    assert result.exit_code == code, result.output
    return result.output


def test_participant_writes_bids_derivatives(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "deriv"
    text = _bids(str(dataset), str(out), "participant", "--method", "bspline", "--factor", "2")
    assert "3 written, 0 skipped (already done), 2 not upscaled, 0 failed" in text
    assert "sub-01_acq-iso_T1w.nii.gz (isotropic" in text
    assert "sub-01_acq-mprage_T1w.nii.gz (3D acquisition" in text
    assert "SpacingBetweenSlices 3.6 mm differs" in text
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert written == sorted([OUT_T1, OUT_T2, OUT_FLAIR])
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["GeneratedBy"][0] == {
        "Name": "medsr",
        "Version": __version__,
        "Description": "Through-plane super-resolution of thick-slice anatomical images",
    }
    assert (out / description["DatasetLinks"]["raw"]).resolve() == dataset.resolve()
    t1 = json.loads((out / OUT_T1.replace(".nii.gz", ".json")).read_text())
    assert t1["Sources"] == [f"bids:raw:{T1}"]
    assert t1["SourceMetadata"] == ["sub-01/anat/sub-01_T1w.json"]
    assert t1["thickness_mm"] == 2.5 and t1["settings"]["method"] == "bspline"
    assert t1["medsr_version"] == __version__ and t1["factor"] == 2.0
    t2 = json.loads((out / OUT_T2.replace(".nii.gz", ".json")).read_text())
    assert t2["thickness_mm"] == 3.5 and t2["SourceMetadata"] == ["T2w.json"]  # inherited from the root
    assert t2["thickness_source"] == str(dataset / "T2w.json")
    assert nib.load(str(out / OUT_T2)).shape == (9, 8, 10)


def test_output_geometry_equals_medsr_infer(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "deriv"
    _bids(str(dataset), str(out), "participant", "--method", "bspline", "--factor", "2", "--suffix", "T1w")
    alone = tmp_path / "alone.nii.gz"
    result = runner.invoke(
        app, ["infer", str(dataset / T1), "-o", str(alone), "--method", "bspline", "--factor", "2"]
    )
    assert result.exit_code == 0, result.output
    a, b = nib.load(str(out / OUT_T1)), nib.load(str(alone))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    centre = a.affine @ np.array([4.0, 3.5, 4.5, 1.0])  # world coordinates of an output voxel
    np.testing.assert_allclose(centre, b.affine @ np.array([4.0, 3.5, 4.5, 1.0]))


def test_rerun_skips_finished_and_redoes_changed(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "deriv"
    args = (str(dataset), str(out), "participant", "--method", "bspline", "--factor", "2")
    _bids(*args)
    before = (out / OUT_T1).stat().st_mtime_ns
    assert "0 written, 3 skipped (already done)" in _bids(*args)
    assert (out / OUT_T1).stat().st_mtime_ns == before
    text = _bids(str(dataset), str(out), "participant", "--method", "bspline", "--factor", "3")
    assert "3 written (3 redone), 0 skipped" in text
    assert f"redone: {T1} (factor 2 -> 3)" in text
    assert nib.load(str(out / OUT_T1)).shape == (9, 8, 15)
    (dataset / "T2w.json").write_text(json.dumps({"SliceThickness": 5.0}))
    text = _bids(str(dataset), str(out), "participant", "--method", "bspline", "--factor", "3")
    assert "1 written (1 redone), 2 skipped" in text and f"redone: {T2} (thickness 3.5 -> 5)" in text
    assert json.loads((out / OUT_T2.replace(".nii.gz", ".json")).read_text())["thickness_mm"] == 5.0
    (dataset / T1.replace(".nii.gz", ".json")).write_text(json.dumps({"SliceThickness": 2.0}))
    text = _bids(str(dataset), str(out), "participant", "--method", "bspline", "--factor", "3")
    assert f"redone: {T1} (SliceThickness 2.5 -> 2.0 in the JSON sidecars)" in text


def test_participant_label_filter(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "deriv"
    _bids(str(dataset), str(out), "participant", "--participant-label", "sub-02", "--method", "nearest")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz")) == sorted([OUT_FLAIR, OUT_T2])
    both = _bids(
        str(dataset), str(out), "participant", "--participant-label", "01", "02", "--method", "nearest"
    )
    assert "1 written, 2 skipped" in both
    wrong = _bids(str(dataset), str(out), "participant", "--participant-label", "03", code=2)
    assert "medsr: error: --participant-label 03: no such subject" in wrong and "01, 02" in wrong


def test_group_table(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "deriv"
    _bids(str(dataset), str(out), "group", code=2)  # nothing to summarise yet
    _bids(str(dataset), str(out), "participant", "--method", "bspline", "--factor", "2")
    text = _bids(str(dataset), str(out), "group", "--factor", "3", "--participant-label", "01")
    assert "group: 3 outputs" in text
    assert "the group level only tabulates finished outputs; ignored: --participant-label --factor" in text
    with (out / "medsr_group.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert sorted(r["output"] for r in rows) == sorted([OUT_T1, OUT_T2, OUT_FLAIR])
    row = next(r for r in rows if r["output"] == OUT_T1)
    assert row["source"] == f"bids:raw:{T1}" and row["method"] == "bspline" and row["factor"] == "2"
    assert float(row["wall_seconds"]) >= 0 and json.loads(row["settings"])["factor"] == 2


def test_one_failure_does_not_stop_the_others(dataset: Path, tmp_path: Path) -> None:
    (dataset / "sub-02/anat").mkdir(parents=True)
    (dataset / "sub-02/anat/sub-02_T1w.nii.gz").write_bytes(b"not a nifti" * 50)
    out = tmp_path / "deriv"
    text = _bids(str(dataset), str(out), "participant", "--method", "nearest", code=1)
    assert "3 written" in text and "1 failed" in text and "failed: sub-02/anat/sub-02_T1w.nii.gz" in text


def test_names_and_arguments() -> None:
    name = parse_name("sub-01_ses-2_task-x_acq-ax_run-1_echo-2_T2w.nii")
    assert name is not None
    assert output_name(name) == "sub-01_ses-2_task-x_acq-ax_rec-medsr_run-1_echo-2_T2w.nii.gz"
    assert parse_name("not_bids-name.nii.gz") is None
    assert spread_values(["a", "--suffix", "T1w", "T2w", "--method", "x", "--suffix=FLAIR", "PDw"], ("--suffix",)) == [
        "a", "--suffix", "T1w", "--suffix", "T2w", "--method", "x", "--suffix=FLAIR", "--suffix", "PDw",
    ]  # fmt: skip


def test_refuses_to_write_into_the_raw_dataset(dataset: Path) -> None:
    with pytest.raises(MedsrError, match="inside the BIDS dataset"):
        check_output_dir(dataset, dataset)
    with pytest.raises(MedsrError, match="inside the BIDS dataset"):
        check_output_dir(dataset, dataset / "medsr_out")
    check_output_dir(dataset, dataset / "derivatives" / "medsr")
