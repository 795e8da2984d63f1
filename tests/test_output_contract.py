"""The output contract (docs/outputs.md): MHD data files under their final name, one sidecar per output.

Every test runs the real CLI and lists the output folder: no hidden or temporary file may survive.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

import medsr.inference.predict as predict
import medsr.io.writers as writers
from medsr.cli.main import app
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of
from tests.helpers.dicom import copy_ct5n

runner = CliRunner()
NEAREST = ("--method", "nearest", "--factor", "2")


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def refused(result, *names: str) -> None:
    """Exit 2 with one line ``medsr: error: ...`` that names every one of ``names``."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsr: error: "), result.stderr
    assert all(name in lines[0] for name in names), lines[0]


# ---------------------------------------------------------------- MHD outputs


@pytest.mark.parametrize(
    "name,files",
    [
        ("out.mhd", ["out.json", "out.mhd", "out.zraw"]),
        ("out.mha", ["out.json", "out.mha"]),
        ("out.nrrd", ["out.json", "out.nrrd"]),
        ("out.nii", ["out.json", "out.nii"]),
        ("out.nii.gz", ["out.json", "out.nii.gz"]),
    ],
)
def test_each_format_leaves_exactly_its_files(oblique_nifti: Path, name: str, files: list[str]) -> None:
    result = run("infer", oblique_nifti, *NEAREST, "-o", oblique_nifti.with_name(name))
    assert result.exit_code == 0, result.output
    assert listing(oblique_nifti.parent) == sorted(["oblique.nii.gz", *files])
    if name == "out.mhd":
        header = oblique_nifti.with_name(name).read_text()
        assert "ElementDataFile = out.zraw" in header.splitlines()


@pytest.mark.parametrize("name", ["OUT.MHD", "out.Mha", "out.NII", "out.Nii.Gz"])
def test_a_suffix_the_writers_only_know_in_lower_case_is_refused(oblique_nifti: Path, name: str) -> None:
    """ITK writes x.MHA as x.mhd + x.zraw and reads neither x.MHA nor x.MHD back: refused, nothing left."""
    result = run("infer", oblique_nifti, *NEAREST, "-o", oblique_nifti.with_name(name))
    refused(result, name, "lower case")
    assert listing(oblique_nifti.parent) == ["oblique.nii.gz"]


def test_mhd_keeps_its_world_geometry_when_copied_elsewhere(oblique_nifti: Path, tmp_path: Path) -> None:
    """The visible files (header and data) are the whole output: copied to another folder, they read
    back with the same world coordinates and voxels as the NIfTI output of the same run."""
    folder = oblique_nifti.parent
    assert run("infer", oblique_nifti, *NEAREST, "-o", folder / "a.nii.gz").exit_code == 0
    assert run("infer", oblique_nifti, *NEAREST, "-o", folder / "b.mhd").exit_code == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("b.mhd", "b.zraw"):
        shutil.copy(folder / name, moved / name)
    reference = nib.load(str(folder / "a.nii.gz"))
    image = sitk.ReadImage(str(moved / "b.mhd"))
    assert image.GetSize() == reference.shape == (20, 18, 18)
    for index in [(0, 0, 0), (19, 0, 0), (0, 17, 0), (0, 0, 17), (7, 11, 13)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = reference.affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(lps * [-1, -1, 1], ras[:3], atol=1e-4)
    volume = load_volume(moved / "b.mhd")
    np.testing.assert_allclose(affine_of(volume), reference.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(volume[0]), reference.get_fdata(dtype=np.float32))


def test_mhd_overwrite_replaces_header_and_data_and_leaves_nothing_stale(oblique_nifti: Path) -> None:
    folder = oblique_nifti.parent
    out = folder / "out.mhd"
    # An earlier output by another tool (uncompressed: out.raw) and a medsr temporary an older medsr left.
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)), str(out), useCompression=False)
    (folder / ".out.part-4242.zraw").write_bytes(b"pixel data of an older medsr")
    out.write_text(
        out.read_text().replace("ElementDataFile = out.raw", "ElementDataFile = .out.part-4242.zraw")
    )
    (folder / "out.raw").write_bytes(b"\0" * 96)
    refused(run("infer", oblique_nifti, *NEAREST, "-o", out), "out.mhd", "--overwrite")
    result = run("infer", oblique_nifti, "--method", "nearest", "--factor", "3", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert listing(folder) == ["oblique.nii.gz", "out.json", "out.mhd", "out.zraw"]
    assert sitk.ReadImage(str(out)).GetSize() == (20, 18, 27)
    result = run("infer", oblique_nifti, *NEAREST, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert listing(folder) == ["oblique.nii.gz", "out.json", "out.mhd", "out.zraw"]
    assert sitk.ReadImage(str(out)).GetSize() == (20, 18, 18)


def test_a_stray_data_file_is_not_replaced_without_overwrite(oblique_nifti: Path) -> None:
    stray = oblique_nifti.with_name("out.zraw")
    stray.write_bytes(b"someone's data")
    refused(run("infer", oblique_nifti, *NEAREST, "-o", oblique_nifti.with_name("out.mhd")), "out.zraw")
    assert stray.read_bytes() == b"someone's data"
    assert listing(oblique_nifti.parent) == ["oblique.nii.gz", "out.zraw"]


@pytest.mark.parametrize("fault,code", [(RuntimeError("I/O error"), 2), (KeyboardInterrupt(), 130)])
def test_failure_after_the_data_is_written_leaves_nothing(
    oblique_nifti: Path, monkeypatch, fault: BaseException, code: int
) -> None:
    real = writers._write_itk

    def write_then_fail(*args):
        real(*args)  # header and data are on disk when the fault hits
        raise fault

    monkeypatch.setattr(writers, "_write_itk", write_then_fail)
    result = run("infer", oblique_nifti, *NEAREST, "-o", oblique_nifti.with_name("out.mhd"))
    assert result.exit_code == code, result.output
    assert listing(oblique_nifti.parent) == ["oblique.nii.gz"]


def test_failed_move_of_the_header_restores_the_earlier_output(oblique_nifti: Path, monkeypatch) -> None:
    folder = oblique_nifti.parent
    out = folder / "out.mhd"
    assert run("infer", oblique_nifti, *NEAREST, "-o", out).exit_code == 0
    before = {name: (folder / name).read_bytes() for name in listing(folder)}
    real, failed = os.replace, []

    def replace(src, dst):
        if Path(dst) == out and ".part-" in str(src) and not failed:
            failed.append(src)
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    result = run("infer", oblique_nifti, "--method", "nearest", "--factor", "3", "-o", out, "--overwrite")
    refused(result, "Input/output error")
    assert failed and {name: (folder / name).read_bytes() for name in listing(folder)} == before


# ---------------------------------------------------------------- sidecars


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_output_never_takes_another_outputs_sidecar(
    oblique_nifti: Path, monkeypatch, overwrite: list[str]
) -> None:
    folder = oblique_nifti.parent
    assert run("infer", oblique_nifti, *NEAREST, "-o", folder / "s.mha").exit_code == 0
    first = (folder / "s.json").read_bytes()

    def no_work(*args, **kwargs):
        raise AssertionError("the refusal must come before any work")

    with monkeypatch.context() as patch:
        patch.setattr(predict, "upscale", no_work)
        result = run("infer", oblique_nifti, *NEAREST, "-o", folder / "s.nrrd", *overwrite)
    refused(result, "s.json", "s.mha", "s.nrrd", "choose another -o name", "s_nrrd.nrrd")
    assert (folder / "s.json").read_bytes() == first
    assert listing(folder) == ["oblique.nii.gz", "s.json", "s.mha"]
    # The suggested name has a sidecar of its own; the same output may be replaced with its sidecar.
    assert run("infer", oblique_nifti, *NEAREST, "-o", folder / "s_nrrd.nrrd").exit_code == 0
    assert run("infer", oblique_nifti, *NEAREST, "-o", folder / "s.mha", "--overwrite").exit_code == 0
    for output in ("s.mha", "s_nrrd.nrrd"):
        sidecar = folder / (output.split(".")[0] + ".json")
        assert Path(json.loads(sidecar.read_text())["output"]).name == output
    # A sidecar whose output is gone belongs to nobody: the next output of that name takes it.
    (folder / "s.mha").unlink()
    assert run("infer", oblique_nifti, *NEAREST, "-o", folder / "s.nrrd").exit_code == 0
    assert Path(json.loads((folder / "s.json").read_text())["output"]).name == "s.nrrd"


def test_a_dicom_folder_output_and_a_file_output_never_share_a_sidecar(
    oblique_nifti: Path, tmp_path: Path
) -> None:
    copy_ct5n(tmp_path / "series")
    result = run("infer", tmp_path / "series", *NEAREST, "-o", tmp_path / "up")
    assert result.exit_code == 0, result.output
    assert listing(tmp_path) == ["oblique.nii.gz", "series", "up", "up.json"]
    assert len(listing(tmp_path / "up")) == 10
    result = run("infer", oblique_nifti, *NEAREST, "-o", tmp_path / "up.nii.gz", "--overwrite")
    refused(result, "up.json", "up", "up.nii.gz", "up_nii.nii.gz")
    assert listing(tmp_path) == ["oblique.nii.gz", "series", "up", "up.json"]


def test_simulate_never_takes_another_outputs_sidecar(oblique_nifti: Path) -> None:
    folder = oblique_nifti.parent
    simulate = ("simulate", oblique_nifti, "--thickness", "8")
    assert run(*simulate, "-o", folder / "lr.mha").exit_code == 0
    refused(run(*simulate, "-o", folder / "lr.nrrd", "--overwrite"), "lr.json", "lr.mha")
    assert json.loads((folder / "lr.json").read_text())["output"].endswith("lr.mha")
    assert listing(folder) == ["lr.json", "lr.mha", "oblique.nii.gz"]


def test_batch_names_stay_distinct_and_no_scan_takes_another_sidecar(
    oblique_nifti: Path, tmp_path: Path
) -> None:
    """Two scans with one default name get two outputs; a scan added later whose output would share
    an existing output's sidecar is reported as failed instead of taking it."""
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(oblique_nifti, scans / "a.nii.gz")
    shutil.copy(oblique_nifti, scans / "b.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(oblique_nifti)), str(scans / "b.mha"))  # b_medsr.nii.gz too
    out = tmp_path / "out"
    result = run("infer", scans, *NEAREST, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert listing(out) == sorted(
        ["a_medsr.json", "a_medsr.nii.gz", "b_medsr.json", "b_medsr.nii.gz", "b_medsr_2.json"]
        + ["b_medsr_2.nii.gz", "medsr_batch.json"]
    )
    copy_ct5n(scans / "a")  # a DICOM series whose default output a_medsr/ shares a_medsr.json
    result = run("infer", scans, *NEAREST, "-o", out, "--no-progress")
    assert result.exit_code == 1, result.output
    assert "a_medsr.json is the sidecar of" in result.stderr
    for sidecar in out.glob("*_medsr*.json"):
        output = Path(json.loads(sidecar.read_text())["output"])
        assert output.exists() and output.name.split(".")[0] == sidecar.stem, sidecar
    assert not [name for name in listing(out) if name.startswith(".")]
