"""The medsr command through typer's CliRunner: outputs, sidecars and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medsr.cli.main import app
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_info_json_reports_geometry(oblique_nifti: Path) -> None:
    result = run("info", oblique_nifti, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    np.testing.assert_allclose(info["spacing"], [0.8, 1.1, 4.0], rtol=1e-5)
    assert info["shape"] == [20, 18, 9]
    assert info["through_plane_axis"] == 2
    assert info["anisotropy"] == pytest.approx(5.0)
    assert info["dtype"] == "int16"
    assert info["format"] == "nifti"
    assert len(info["orientation"]) == 3


def test_infer_default_output_and_sidecar(oblique_nifti: Path) -> None:
    result = run("infer", oblique_nifti, "--method", "bspline", "--factor", "4")
    assert result.exit_code == 0, result.output
    out = oblique_nifti.with_name("oblique_medsr.nii.gz")
    img = nib.load(str(out))
    assert img.shape == (20, 18, 36)
    sidecar = json.loads(oblique_nifti.with_name("oblique_medsr.json").read_text())
    assert sidecar["method"] == "bspline"
    assert sidecar["factor"] == 4
    assert len(sidecar["input_sha256"]) == 64
    # Default spacing: the finest in-plane spacing.
    result = run("infer", oblique_nifti, "--method", "linear", "-o", oblique_nifti.with_name("iso.nii.gz"))
    assert result.exit_code == 0, result.output
    zooms = nib.load(str(oblique_nifti.with_name("iso.nii.gz"))).header.get_zooms()
    assert zooms[2] == pytest.approx(4.0 * 9 / round(9 * 4.0 / 0.8), rel=1e-4)


@pytest.mark.parametrize(
    "given,profile,said",
    [
        ("Boxcar", "boxcar", "assumed boxcar slices"),
        ("mixed", "mixed", "assumed gaussian or boxcar (mixed) slices"),
        (None, "gaussian", "differ (--profile mixed if their shape is unknown)"),  # a default: the way out
    ],
)
@pytest.mark.slow
def test_infer_selfsup_records_its_slice_profile(
    oblique_nifti: Path, given: str | None, profile: str, said: str
) -> None:
    out = oblique_nifti.with_name("box.nii.gz")
    told = [] if given is None else ["--profile", given]
    result = run("infer", oblique_nifti, *told, "--factor", "4", "--steps", "2", "--no-progress", "-o", out)
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_name("box.json").read_text())
    assert sidecar["method"] == "selfsup" and sidecar["profile"] == profile and sidecar["steps"] == 2
    assert said in result.output and sidecar.get("profile_source") == (given and "given")
    assert ("--profile mixed if" in result.output) == (given is None)
    assert nib.load(str(out)).shape == (20, 18, 36)


def test_infer_spacing_option_gives_non_integer_factor(tmp_path: Path) -> None:
    affine = make_affine((0.7, 0.7, 5.0), rng=np.random.default_rng(4))
    nib.save(nib.Nifti1Image(blob_volume((8, 8, 12)), affine), str(tmp_path / "t.nii.gz"))
    result = run(
        "infer", tmp_path / "t.nii.gz", "--method", "linear", "--spacing", "0.7", "-o", tmp_path / "o.nii.gz"
    )
    assert result.exit_code == 0, result.output
    assert nib.load(str(tmp_path / "o.nii.gz")).shape == (8, 8, round(12 * 5 / 0.7))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--factor", "0"], "positive"),
        (["--factor", "-2"], "positive"),
        (["--factor", "2", "--spacing", "1"], "not both"),
        (["--method", "magic"], "not one of"),
        (["--axis", "7"], "0, 1 or 2"),
        (["--dtype", "int8"], "--dtype"),
        (["--method", "bspline", "--profile", "boxcar"], "--profile"),
        (["--profile", "cosine", "--steps", "1"], "not one of gaussian, boxcar, mixed"),
    ],
)
def test_bad_options_exit_2_with_one_line(oblique_nifti: Path, args: list[str], message: str) -> None:
    result = run("infer", oblique_nifti, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in oblique_nifti.parent.iterdir()) == ["oblique.nii.gz"]


def test_isotropic_input_needs_an_axis(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(blob_volume((6, 6, 6)), np.eye(4)), str(tmp_path / "iso.nii.gz"))
    result = run("infer", tmp_path / "iso.nii.gz", "--method", "linear")
    assert result.exit_code == 2
    assert "isotropic" in result.stderr and "--axis" in result.stderr
    ok = run("infer", tmp_path / "iso.nii.gz", "--method", "linear", "--axis", "S", "--factor", "2")
    assert ok.exit_code == 0, ok.output


def test_missing_unreadable_and_two_d_files(tmp_path: Path) -> None:
    assert run("infer", tmp_path / "missing.nii.gz").exit_code == 2
    (tmp_path / "junk.nii.gz").write_bytes(b"junk" * 100)
    bad = run("infer", tmp_path / "junk.nii.gz")
    assert bad.exit_code == 2 and "junk.nii.gz" in bad.stderr and "Traceback" not in bad.output
    nib.save(nib.Nifti1Image(np.zeros((5, 6), np.float32), np.eye(4)), str(tmp_path / "flat.nii.gz"))
    flat = run("info", tmp_path / "flat.nii.gz")
    assert flat.exit_code == 2 and "2-D" in flat.stderr
    assert not list(tmp_path.glob("*_medsr*"))


def test_single_slice_cannot_be_upscaled(tmp_path: Path) -> None:
    nib.save(
        nib.Nifti1Image(np.ones((6, 6, 1), np.float32), np.diag([1, 1, 5.0, 1])), str(tmp_path / "one.nii")
    )
    result = run("infer", tmp_path / "one.nii", "--method", "linear")
    assert result.exit_code == 2 and "single slice" in result.stderr and "DICOM" not in result.stderr


def test_one_dicom_file_points_to_its_series_folder(tmp_path: Path) -> None:
    import pydicom

    one = Path(pydicom.data.get_testdata_file("dicomdirtests/77654033/CT2/17136"))
    result = run("infer", one, "--method", "linear", "-o", tmp_path / "out.nii.gz")
    assert result.exit_code == 2 and "pass the folder of the whole series" in result.stderr
    assert not list(tmp_path.iterdir())


def test_existing_output_needs_overwrite(oblique_nifti: Path) -> None:
    out = oblique_nifti.with_name("o.nii.gz")
    assert run("infer", oblique_nifti, "--method", "nearest", "-o", out).exit_code == 0
    again = run("infer", oblique_nifti, "--method", "nearest", "-o", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert run("infer", oblique_nifti, "--method", "nearest", "-o", out, "--overwrite").exit_code == 0
    same = run("infer", oblique_nifti, "--method", "nearest", "-o", oblique_nifti, "--overwrite")
    assert same.exit_code == 2 and "is the input" in same.stderr


def test_debug_lets_the_error_through(oblique_nifti: Path) -> None:
    """With --debug the MedsrError itself escapes (typer would print its traceback); without, exit 2."""
    from medsr.errors import MedsrError

    debug = run("--debug", "infer", oblique_nifti, "--factor", "0")
    assert isinstance(debug.exception, MedsrError), repr(debug.exception)
    plain = run("infer", oblique_nifti, "--factor", "0")
    assert plain.exit_code == 2 and isinstance(plain.exception, SystemExit)


@pytest.mark.slow
def test_debug_shows_the_traceback(oblique_nifti: Path) -> None:
    """The real process: a traceback on stderr with --debug, one line without."""
    import subprocess
    import sys

    def medsr(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "medsr", *args, "infer", str(oblique_nifti), "--factor", "0"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    debug = medsr("--debug")
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr, debug.stderr
    assert "MedsrError" in debug.stderr and "resolve_factor" in debug.stderr
    plain = medsr()
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [plain.stderr.strip()] and "medsr: error:" in plain.stderr


@pytest.mark.slow
def test_the_cli_starts_without_importing_torch() -> None:
    """``medsr --help`` stays fast (STYLE.md: heavy imports inside the commands)."""
    import subprocess
    import sys

    code = "import sys, medsr.cli.main; print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout
