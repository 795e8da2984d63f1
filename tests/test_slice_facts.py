"""Slice thickness and profile from a sidecar JSON (BIDS / dcm2niix, medsr simulate) reach the upscaling."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medsr.cli.main import app
from medsr.inference.predict import upscale
from medsr.inference.selfsup.config import config_with
from medsr.io.readers import load_volume
from medsr.io.slice_facts import read_slice_facts
from medsr.jobs.simulate_file import simulate_file
from medsr.transforms.array import simulate_thick_slices
from tests.helpers.volumes import blob_volume, make_affine

TINY = config_with(features=16, blocks=2, batch=8, patch=(8, 24))


@pytest.fixture
def hr_nifti(tmp_path: Path) -> Path:
    """A 24x20x32 HR volume, 1.0 x 0.9 x 1.0 mm on an oblique, flipped grid."""
    affine = make_affine((1.0, 0.9, 1.0), rng=np.random.default_rng(11), flips=(1, -1, 1))
    path = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(blob_volume((24, 20, 32)), affine), str(path))
    return path


def simulated(hr: Path, profile: str = "boxcar", thickness: float = 2.0) -> Path:
    out, _ = simulate_file(hr, thickness=thickness, spacing=4.0, axis=2, profile=profile)
    return out


def test_medsr_simulate_sidecar_gives_thickness_profile_and_axis(hr_nifti: Path) -> None:
    lr = simulated(hr_nifti)
    volume = load_volume(lr)
    assert volume.meta["slice_thickness"] == pytest.approx(2.0)
    assert volume.meta["slice_profile"] == "boxcar"
    assert volume.meta["slice_axis"] == 2
    assert volume.meta["slice_facts_source"] == str(lr.with_name("hr_lr.json"))


def test_bids_sidecar_gives_thickness_only(oblique_nifti: Path) -> None:
    oblique_nifti.with_name("oblique.json").write_text(json.dumps({"SliceThickness": 3.5, "EchoTime": 0.01}))
    volume = load_volume(oblique_nifti)
    assert volume.meta["slice_thickness"] == 3.5
    assert "slice_profile" not in volume.meta and "slice_axis" not in volume.meta
    facts = upscale(volume, factor=2, method="bspline").meta["medsr"]
    assert facts["thickness_mm"] == 3.5
    assert facts["thickness_source"].endswith("oblique.json")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"SliceThickness": -2.0}),
        json.dumps({"SliceThickness": True}),
        json.dumps({"SliceThickness": "3"}),
        json.dumps({"SliceThickness": 1e6}),
        json.dumps(
            {"method": "selfsup", "thickness_mm": 4.0, "SliceThickness": 4.0}
        ),  # a medsr infer sidecar
        json.dumps(
            {"lr_shape": [20, 18, 3], "slice_thickness_mm": 2.0, "profile": "boxcar"}
        ),  # another file's
    ],
)
def test_sidecars_that_do_not_describe_the_file_are_ignored(oblique_nifti: Path, content: str) -> None:
    oblique_nifti.with_name("oblique.json").write_text(content)
    assert read_slice_facts(oblique_nifti, (20, 18, 9)) == {}
    volume = load_volume(oblique_nifti)
    assert "slice_thickness" not in volume.meta
    facts = upscale(volume, factor=2, method="bspline").meta["medsr"]
    assert facts["thickness_mm"] == pytest.approx(4.0) and facts["thickness_source"] == "slice spacing"


@pytest.mark.slow
def test_selfsup_trains_with_the_sidecar_profile_and_given_values_win(hr_nifti: Path) -> None:
    lr = simulated(hr_nifti, profile="boxcar", thickness=2.0)
    kwargs = {"method": "selfsup", "steps": 2, "progress": False, "config": TINY}
    out = upscale(str(lr), factor=4, **kwargs)
    facts = out.meta["medsr"]
    assert (facts["profile"], facts["thickness_mm"]) == ("boxcar", pytest.approx(2.0))
    assert facts["profile_source"] == facts["thickness_source"] == str(lr.with_name("hr_lr.json"))
    for key in ("slice_thickness", "slice_profile", "slice_axis", "slice_facts_source"):
        assert key not in out.meta  # they described the input's slices, not the output's
    given = upscale(str(lr), factor=4, thickness=3.0, profile="gaussian", **kwargs).meta["medsr"]
    assert (given["profile"], given["thickness_mm"]) == ("gaussian", 3.0)
    assert given["profile_source"] == given["thickness_source"] == "given"


def test_facts_for_another_axis_are_not_used(hr_nifti: Path) -> None:
    lr = simulated(hr_nifti)  # slices along axis 2
    facts = upscale(str(lr), axis=0, factor=2, method="bspline").meta["medsr"]
    assert facts["thickness_mm"] == pytest.approx(1.0) and facts["thickness_source"] == "slice spacing"


@pytest.mark.slow
def test_in_memory_simulation_carries_its_profile() -> None:
    affine = make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(5))
    from medsr.io.volume import make_volume

    hr = make_volume(blob_volume((24, 20, 32)), affine)
    lr = simulate_thick_slices(hr, 3.0, 4.0, axis=2, profile="boxcar")
    facts = upscale(lr, factor=4, method="selfsup", steps=2, progress=False, config=TINY).meta["medsr"]
    assert (facts["profile"], facts["thickness_mm"]) == ("boxcar", 3.0)
    assert facts["profile_source"] == facts["thickness_source"] == "the volume's metadata"


def test_cli_reports_the_assumed_slices_and_info_shows_them(hr_nifti: Path) -> None:
    lr = simulated(hr_nifti)
    runner = CliRunner()
    info = runner.invoke(app, ["info", str(lr)])
    assert info.exit_code == 0, info.output
    assert "thickness    2 mm boxcar profile along axis 2 (from" in info.output
    result = runner.invoke(app, ["infer", str(lr), "--factor", "4", "--steps", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "assumed boxcar slices of FWHM 2 mm" in result.output
    assert "--profile mixed" not in result.output  # the sidecar named the shape: no hint
    sidecar = json.loads(lr.with_name("hr_lr_medsr.json").read_text())
    assert sidecar["profile"] == "boxcar" and sidecar["thickness_source"].endswith("hr_lr.json")
    # The output's own sidecar is an infer record: reading the output back takes no slice facts from it.
    assert "slice_thickness" not in load_volume(lr.with_name("hr_lr_medsr.nii.gz")).meta


@pytest.mark.parametrize("axis,expected", [(2, 2.0), (0, None)])
def test_a_simulated_dicom_series_records_its_slice_thickness(tmp_path: Path, axis: int, expected) -> None:
    """SliceThickness is the simulated thickness for slices along the written axis (2), else the spacing."""
    import pydicom

    from medsr.io.dicom_write import write_dicom_series
    from medsr.io.volume import make_volume

    hr = make_volume(blob_volume((24, 20, 32)), make_affine((1.0, 0.9, 1.0), rng=np.random.default_rng(2)))
    lr = simulate_thick_slices(hr, 2.0, 4.0, axis=axis, profile="gaussian")
    folder = tmp_path / "series"
    folder.mkdir()
    write_dicom_series(lr, folder, dtype="float32")
    files = sorted(folder.glob("*.dcm"))
    gap = float(pydicom.dcmread(files[0]).SpacingBetweenSlices)
    assert gap == pytest.approx(4.0 if axis == 2 else 1.0, abs=1e-3)
    thicknesses = [float(pydicom.dcmread(f).SliceThickness) for f in files]
    assert thicknesses == pytest.approx([expected or gap] * len(files))
    assert load_volume(folder).meta["slice_thickness"] == pytest.approx(expected or gap)


def test_the_slice_profile_is_resolved_once_with_its_sources(hr_nifti: Path, oblique_nifti: Path) -> None:
    """resolve_slice_profile: given > sidecar > spacing for the thickness (spacing: not known), and the
    shape from a simulate sidecar only for a method that trains on it."""
    from medsr.inference.slice_profile import SPACING_SOURCE, resolve_slice_profile
    from medsr.profiles import SliceProfile

    path = simulated(hr_nifti)
    lr, sidecar = load_volume(path), str(path.with_name("hr_lr.json"))
    assert resolve_slice_profile(lr, 2, None, None, reads_shape=True) == SliceProfile(
        2.0, sidecar, True, "boxcar", sidecar
    )
    assert resolve_slice_profile(lr, 2, 3.0, "gaussian", reads_shape=True) == SliceProfile(
        3.0, "given", True, "gaussian", "given"
    )
    assert resolve_slice_profile(lr, 2, None, None).shape_source is None  # bspline, a trained or reused model
    plain = resolve_slice_profile(load_volume(oblique_nifti), 2, None, None, reads_shape=True)
    assert plain.thickness_mm == pytest.approx(4.0) and not plain.thickness_known
    assert plain.facts() == {"thickness_mm": plain.thickness_mm, "thickness_source": SPACING_SOURCE}
