"""The derived DICOM series of ``medsr infer SERIES``: the source's pixel storage, references, derivation, dciodvfy.

Real data: pydicom's CT5N series (5 CT slices, int16, RescaleIntercept -1024) and an MR series stacked from
pydicom's MR_small.dcm (real header and pixels, no Rescale tags; 4 slices 2 mm apart, new SOPInstanceUIDs).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from medsr import __version__
from medsr.cli.main import app
from medsr.errors import MedsrWarning
from medsr.inference.predict import upscale
from medsr.io.dicom import read_dicom_series
from medsr.io.volume import affine_of
from medsr.io.writers import save_volume
from tests.helpers.dicom import CT5N, copy_ct5n

MR_SMALL = Path(pydicom.data.get_testdata_file("MR_small.dcm"))


def mr_series(folder: Path, n: int = 4, gap_mm: float = 2.0) -> Path:
    """MR_small.dcm stacked ``n`` times ``gap_mm`` apart along its slice normal, each slice its own instance."""
    folder.mkdir(parents=True)
    for k in range(n):
        ds = pydicom.dcmread(MR_SMALL)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient]) + k * gap_mm * np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["medsr test MR_small stack", str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"mr{k}.dcm")
    return folder


def infer(source: Path, out: Path, *extra: str) -> None:
    args = ["infer", str(source), "-o", str(out), "--method", "bspline", "--factor", "2", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def instances(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def storage(ds: pydicom.Dataset) -> tuple:
    return ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation


def slice_centre(ds: pydicom.Dataset) -> np.ndarray:
    """LPS mm of the centre of an image plane."""
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    dy, dx = (float(v) for v in ds.PixelSpacing)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    return ipp + iop[:3] * dx * (ds.Columns - 1) / 2 + iop[3:] * dy * (ds.Rows - 1) / 2


# ---------------------------------------------------------------- pixel storage


def test_ct_default_keeps_integer_hu_and_the_source_rescale(tmp_path):
    out = tmp_path / "ct_medsr"
    infer(CT5N, out)
    src, written = instances(CT5N)[0], instances(out)
    for ds in written:
        assert storage(ds) == storage(src) == (16, 16, 15, 1)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    upscaled = upscale(read_dicom_series(CT5N), method="bspline", factor=2)
    expected = upscaled[0].numpy().astype(np.float64)
    back = read_dicom_series(out)
    np.testing.assert_allclose(affine_of(back), affine_of(upscaled), atol=1e-5)
    np.testing.assert_array_equal(back[0].numpy(), np.rint(expected))
    assert np.abs(back[0].numpy() - expected).max() <= 0.5 * 1.0
    assert json.loads((tmp_path / "ct_medsr.json").read_text())["dtype"] == "input"


def test_mr_default_keeps_integer_storage_without_rescale_tags(tmp_path):
    source = mr_series(tmp_path / "mr")
    out = tmp_path / "mr_medsr"
    infer(source, out)
    src = pydicom.dcmread(source / "mr0.dcm")
    for ds in instances(out):
        assert storage(ds) == storage(src)
        assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds  # as in the source (MR Image IOD)
    expected = upscale(read_dicom_series(source), method="bspline", factor=2)[0].numpy().astype(np.float64)
    np.testing.assert_array_equal(read_dicom_series(out)[0].numpy(), np.rint(expected))


def test_float32_storage_only_when_asked(tmp_path):
    infer(CT5N, tmp_path / "default")
    infer(CT5N, tmp_path / "float", "--dtype", "float32")
    assert float(instances(tmp_path / "default")[0].RescaleSlope) == 1.0
    fine = instances(tmp_path / "float")[0]
    expected = upscale(read_dicom_series(CT5N), method="bspline", factor=2)[0].numpy().astype(np.float64)
    slope = float(fine.RescaleSlope)
    assert slope == pytest.approx((expected.max() - expected.min()) / 65535, rel=1e-6)
    back = read_dicom_series(tmp_path / "float")[0].numpy()
    assert np.abs(back - expected).max() <= slope / 2 + 1e-3  # float32 readback of the rescaled values
    assert not np.array_equal(back, np.rint(back))  # fractional HU kept
    assert json.loads((tmp_path / "float.json").read_text())["dtype"] == "float32"


def test_nifti_default_stays_float32(tmp_path, oblique_nifti):
    import nibabel as nib

    out = tmp_path / "scan_medsr.nii.gz"
    result = CliRunner().invoke(
        app, ["infer", str(oblique_nifti), "-o", str(out), "--method", "nearest", "--factor", "2"]
    )
    assert result.exit_code == 0, result.output
    assert nib.load(out).get_data_dtype() == np.float32


@pytest.mark.parametrize(("bits_stored", "high_hu"), [(16, 32767 - 1024), (12, 2047 - 1024)])
def test_values_beyond_the_stored_range_are_clipped_with_a_warning(tmp_path, bits_stored, high_hu):
    def narrow(k: int, ds: pydicom.Dataset) -> None:
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1  # CT5N's stored values fit 12 bits

    source = tmp_path / "ct"
    copy_ct5n(source, narrow)
    volume = upscale(read_dicom_series(source), method="nearest", factor=2)
    volume[0, 0, 0, 0], volume[0, 1, 0, 0], volume[0, 2, 0, 0] = 40000.0, -40000.0, high_hu + 0.4
    low_hu = -(1 << (bits_stored - 1)) - 1024
    message = rf"2 of {volume[0].numel()} voxels .* stored range {low_hu + 1024}\.\.{high_hu + 1024} "
    with pytest.warns(
        MedsrWarning, match=message + rf"\(BitsStored {bits_stored}, signed; {low_hu}\.\.{high_hu}"
    ):
        save_volume(volume, tmp_path / "out")
    ds = pydicom.dcmread(tmp_path / "out" / "IM_0001.dcm")
    assert (ds.BitsStored, ds.HighBit, float(ds.RescaleIntercept)) == (bits_stored, bits_stored - 1, -1024.0)
    back = read_dicom_series(tmp_path / "out")[0].numpy()
    assert (back[0, 0, 0], back[1, 0, 0], back[2, 0, 0]) == (high_hu, low_hu, high_hu)
    np.testing.assert_array_equal(back[3:], np.rint(volume[0].numpy()[3:]))


# ---------------------------------------------------------------- references and derivation


def expected_sources(centre_mm: float, positions: dict[str, float]) -> set[str]:
    """The source instance at ``centre_mm`` (0.01 mm), else the two around it, else the nearest one."""
    at = [uid for uid, p in positions.items() if abs(p - centre_mm) <= 0.01]
    if at:
        return set(at)
    below = {u: p for u, p in positions.items() if p < centre_mm}
    above = {u: p for u, p in positions.items() if p > centre_mm}
    picked = ([max(below, key=below.get)] if below else []) + ([min(above, key=above.get)] if above else [])
    return set(picked) if below and above else {picked[0]}


@pytest.mark.parametrize("factor", ["2", "3"])  # 3: every third output slice lies on a source slice
def test_each_instance_refers_to_its_nearest_source_slices(tmp_path, factor):
    out = tmp_path / "ct_medsr"
    result = CliRunner().invoke(
        app, ["infer", str(CT5N), "-o", str(out), "--method", "bspline", "--factor", factor]
    )
    assert result.exit_code == 0, result.output
    sources = instances(CT5N)
    iop = np.array([float(v) for v in sources[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    positions = {ds.SOPInstanceUID: float(slice_centre(ds) @ normal) for ds in sources}
    singles = 0
    for ds in instances(out):
        refs = ds.SourceImageSequence
        uids = {item.ReferencedSOPInstanceUID for item in refs}
        assert uids == expected_sources(float(slice_centre(ds) @ normal), positions)
        singles += len(uids) == 1
        for item in refs:
            assert item.ReferencedSOPClassUID == sources[0].SOPClassUID
            (code,) = item.PurposeOfReferenceCodeSequence
            assert (code.CodeValue, code.CodingSchemeDesignator) == ("121322", "DCM")
        (series,) = ds.ReferencedSeriesSequence
        assert series.SeriesInstanceUID == sources[0].SeriesInstanceUID
        assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == uids
        assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert singles == (2 if factor == "2" else 5 + 2)  # the two ends beyond the source; and the 5 on it


def test_derivation_is_described(tmp_path):
    out = tmp_path / "ct_medsr"
    infer(CT5N, out)
    for ds in instances(out):
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        text = ds.DerivationDescription
        assert text.startswith(f"medsr {__version__}") and "method bspline" in text and "factor 2" in text
        (code,) = ds.DerivationCodeSequence
        assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
            "113085",
            "DCM",
            "Spatial resampling",
        )


# ---------------------------------------------------------------- dciodvfy


def dciodvfy_errors(files: list[Path]) -> set[str]:
    """dciodvfy's Error lines over ``files``, with instance-specific values (UIDs, numbers in ``<...>``) blanked."""
    errors = set()
    for f in files:
        run = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        for line in (run.stdout + run.stderr).splitlines():
            if line.startswith("Error"):
                errors.add(re.sub(r"<[-+.\\\deE ]*>", "<#>", line).strip())
    return errors


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed"
)
@pytest.mark.parametrize("dtype", [None, "float32"])
@pytest.mark.parametrize("kind", ["ct", "mr", "nifti"])
def test_dciodvfy_finds_no_error_the_source_does_not_have(tmp_path, oblique_nifti, kind, dtype):
    source = {"ct": CT5N, "mr": mr_series(tmp_path / "mr"), "nifti": oblique_nifti}[kind]
    out = tmp_path / "derived"
    infer(source, out, *(["--dtype", dtype] if dtype else []))
    source_errors = dciodvfy_errors(sorted(source.iterdir())) if source.is_dir() else set()
    written = sorted(out.iterdir())
    assert written
    assert dciodvfy_errors(written) - source_errors == set()
