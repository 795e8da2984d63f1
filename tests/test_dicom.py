"""DICOM series reading and derived-series writing, against SimpleITK and pydicom's shipped test series."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medsr.errors import MedsrError, MedsrWarning
from medsr.io.dicom import read_dicom_series, write_dicom_series
from medsr.io.volume import affine_of, make_volume
from tests.helpers.dicom import (
    BROKEN,
    CT5N,
    DATA,
    DIRTESTS,
    LOCALIZER_UID,
    MR2,
    PILOT_UID,
    assert_affine_matches_sitk,
    assert_same_world,
    copy_ct5n,
    oblique_affine,
    sitk_array_xyz,
    sitk_read,
)

# ---------------------------------------------------------------- reading real series


def test_ct5n_matches_simpleitk():
    vol = read_dicom_series(CT5N)
    image = sitk_read(CT5N)
    assert tuple(vol.shape) == (1, 16, 16, 5)
    assert_affine_matches_sitk(affine_of(vol), image, atol=1e-4)
    np.testing.assert_array_equal(vol[0].numpy().astype(np.float64), sitk_array_xyz(image))
    # sorted by position, not InstanceNumber: z increases with k, first file is the lowest slice
    assert np.allclose(affine_of(vol)[:3, 2], [0, 0, 2.5], atol=1e-6)
    assert Path(vol.meta["dicom_template"]).name == "3353"
    assert vol.meta["original_dtype"] == "int16"
    assert vol.meta["rescale"] == (1.0, -1024.0)
    assert vol.meta["slice_thickness"] == pytest.approx(2.5)
    assert vol.meta["modality"] == "CT"
    assert vol.meta["format"] == "dicom"
    assert vol.meta["dicom_series_uid"].endswith(".16302.0.6")
    assert vol.dtype == np.float32 or str(vol.dtype) == "torch.float32"


def test_shuffled_file_order_gives_identical_volume():
    files = sorted(CT5N.iterdir())
    ref = read_dicom_series(CT5N)
    random.Random(3).shuffle(files)
    vol = read_dicom_series(files)
    np.testing.assert_array_equal(vol.numpy(), ref.numpy())
    np.testing.assert_array_equal(affine_of(vol), affine_of(ref))


def test_nonuniform_spacing_is_refused():
    folder = DIRTESTS / "77654033" / "CT2"
    with pytest.raises(MedsrError, match="non-uniform slice spacing") as err:
        read_dicom_series(folder)
    msg = str(err.value)
    assert str(folder) in msg and "202.500 mm" in msg and "1.250 mm" in msg
    assert "17106" in msg and "17136" in msg


def test_several_series_are_listed():
    with pytest.raises(MedsrError, match="pass --series UID") as err:
        read_dicom_series(MR2)
    msg = str(err.value)
    assert str(MR2) in msg and "3 DICOM series" in msg
    for uid in (LOCALIZER_UID, PILOT_UID, "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.17"):
        assert uid in msg
    assert "'FAST LOCALIZER'" in msg and "3 files" in msg and "MR" in msg


def test_choosing_a_series():
    vol = read_dicom_series(MR2, series_uid=LOCALIZER_UID)  # a single sagittal slice
    assert tuple(vol.shape) == (1, 16, 16, 1)
    ras = affine_of(vol)
    # IOP (0,1,0 / 0,0,-1): rows run anterior->posterior (RAS -y), columns foot-ward; normal = LPS -x = RAS +x
    np.testing.assert_allclose(ras[:3, 0], [0, -1.367188, 0], atol=1e-6)
    np.testing.assert_allclose(ras[:3, 1], [0, 0, -1.367188], atol=1e-6)
    np.testing.assert_allclose(ras[:3, 2], [10.0, 0, 0], atol=1e-6)  # SliceThickness, no SpacingBetweenSlices
    np.testing.assert_allclose(ras[:3, 3], [0, 175, 175], atol=1e-6)
    with pytest.raises(MedsrError, match="different orientations"):
        read_dicom_series(MR2, series_uid=PILOT_UID)
    with pytest.raises(MedsrError, match="no series with SeriesInstanceUID 1.2.3; available") as err:
        read_dicom_series(MR2, series_uid="1.2.3")
    assert LOCALIZER_UID in str(err.value)


def test_single_slice_prefers_spacing_between_slices(tmp_path):
    def first_only(k, ds):
        ds.SpacingBetweenSlices = "3.0"
        return k == 0

    files = copy_ct5n(tmp_path, edit=first_only)
    vol = read_dicom_series(files)
    assert tuple(vol.shape) == (1, 16, 16, 1)
    np.testing.assert_allclose(affine_of(vol)[:3, 2], [0, 0, 3.0])
    assert vol.meta["filename_or_obj"] == str(files[0])


def test_gantry_tilt_uses_position_steps(tmp_path):
    def tilt(k, ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.4 * (8.7625 - z) / 2.5, z]

    copy_ct5n(tmp_path, tilt)
    ras = affine_of(read_dicom_series(tmp_path))
    np.testing.assert_allclose(ras[:3, 2], [0, 0.4, 2.5], atol=1e-5)  # LPS y step -0.4 per +2.5 mm z


# ---------------------------------------------------------------- synthetic error fixtures


@pytest.mark.parametrize("case", BROKEN)
def test_broken_series_are_refused(tmp_path, case):
    edit, pattern, names = BROKEN[case]
    copy_ct5n(tmp_path, edit)
    with pytest.raises(MedsrError, match=pattern) as err:
        read_dicom_series(tmp_path)
    for name in names:
        assert name in str(err.value)
    assert str(tmp_path) in str(err.value)


def _make_rtstruct(path: Path, series_uid: str | None = None) -> None:
    ds = pydicom.dcmread(sorted(CT5N.iterdir())[0])
    for keyword in ("PixelData", "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.RTStructureSetStorage
    ds.Modality = "RTSTRUCT"
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    ds.save_as(path)


def test_non_image_objects(tmp_path):
    only = tmp_path / "only"
    only.mkdir()
    _make_rtstruct(only / "rs.dcm")
    with pytest.raises(MedsrError, match="rs.dcm: not an image .*RTSTRUCT"):
        read_dicom_series(only)
    mixed = tmp_path / "mixed"
    copy_ct5n(mixed)
    _make_rtstruct(mixed / "rs.dcm")  # same SeriesInstanceUID as the CT slices
    with pytest.raises(MedsrError, match="rs.dcm: not an image"):
        read_dicom_series(mixed)
    beside = tmp_path / "beside"
    copy_ct5n(beside)
    _make_rtstruct(beside / "rs.dcm", series_uid="1.2.3.4")  # its own series: the CT is meant
    assert tuple(read_dicom_series(beside).shape) == (1, 16, 16, 5)


def test_folder_skips_non_dicom_files(tmp_path):
    copy_ct5n(tmp_path / "a" / "b")
    (tmp_path / "README").write_text("not dicom\n")
    (tmp_path / "a" / "notes.txt").write_bytes(b"\x08\x00garbage")
    shutil.copy(DIRTESTS / "DICOMDIR", tmp_path / "DICOMDIR")
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.numpy(), read_dicom_series(CT5N).numpy())
    assert vol.meta["filename_or_obj"] == str(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MedsrError, match="empty: no DICOM image files"):
        read_dicom_series(empty)
    with pytest.raises(MedsrError, match="README: not a DICOM image file"):
        read_dicom_series([tmp_path / "README"])
    with pytest.raises(MedsrError, match="nothere.dcm: no such DICOM file"):
        read_dicom_series([tmp_path / "nothere.dcm"])


def test_files_without_preamble(tmp_path):
    for src in CT5N.iterdir():
        ds = pydicom.dcmread(src)
        ds.preamble = None
        pydicom.dcmwrite(tmp_path / src.name, ds, enforce_file_format=False)
    assert (tmp_path / "2062").read_bytes()[:2] == b"\x02\x00"
    np.testing.assert_array_equal(read_dicom_series(tmp_path).numpy(), read_dicom_series(CT5N).numpy())


def test_manifest_finds_a_series_without_preamble_as_infer_does(tmp_path):
    """One DICOM rule (medsr.io.formats.looks_dicom) for ``medsr manifest`` and ``medsr infer`` batches."""
    from medsr.io.manifest_build import find_volumes
    from medsr.jobs.infer import collect_inputs

    series = tmp_path / "old"
    series.mkdir()
    for src in CT5N.iterdir():
        ds = pydicom.dcmread(src)
        ds.preamble = None
        pydicom.dcmwrite(series / src.name, ds, enforce_file_format=False)
    assert find_volumes(tmp_path) == collect_inputs(tmp_path) == [series]


def test_missing_decoder_names_the_package():
    path = DATA / "MR_small_jpeg_ls_lossless.dcm"
    try:
        _ = pydicom.dcmread(path).pixel_array
    except RuntimeError:
        pass
    else:
        pytest.skip("a JPEG-LS decoder is installed")
    with pytest.raises(MedsrError, match="MR_small_jpeg_ls_lossless.dcm: cannot decode its JPEG-LS") as err:
        read_dicom_series([path])
    assert "pylibjpeg" in str(err.value) and "gdcm" in str(err.value)


# ---------------------------------------------------------------- writing


@pytest.fixture
def written(tmp_path):
    """A CT-templated oblique volume written as a derived series: (volume, folder)."""
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 2500, size=(6, 5, 4)).astype(np.float32)
    data[0, 0, 0], data[1, 0, 0] = -1000.25, 2499.75  # not integers: rounded to the stored precision
    template = sorted(CT5N.iterdir())[0]
    vol = make_volume(
        data, oblique_affine(), dicom_template=str(template), original_dtype="int16", rescale=(1.0, -1024.0)
    )
    folder = tmp_path / "out"
    folder.mkdir()
    write_dicom_series(vol, folder)
    return vol, folder


def test_written_series_reads_back_with_same_geometry(written):
    vol, folder = written
    back = read_dicom_series(folder)
    data, aff = vol[0].numpy(), affine_of(vol)
    # the array's k axis runs against the slice normal, so the reader (sorting by position) reverses it
    np.testing.assert_allclose(affine_of(back)[:3, :2], aff[:3, :2], atol=1e-6)
    np.testing.assert_allclose(affine_of(back)[:3, 2], -aff[:3, 2], atol=1e-6)
    assert_same_world(data, aff, back[0].numpy(), affine_of(back), atol_mm=1e-3, tol=0.5 + 1e-4)
    np.testing.assert_array_equal(back[0].numpy()[2:, :, ::-1], data[2:])  # integer voxels exact
    image = sitk_read(folder)
    assert_affine_matches_sitk(affine_of(back), image, atol=1e-3)
    np.testing.assert_allclose(sitk_array_xyz(image), back[0].numpy(), atol=1e-4)


def test_written_tags(written):
    vol, folder = written
    template = pydicom.dcmread(vol.meta["dicom_template"], stop_before_pixels=True)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"IM_{k:04d}.dcm" for k in range(1, 5)]
    sets = [pydicom.dcmread(f) for f in files]
    uids = {ds.SOPInstanceUID for ds in sets}
    assert len(uids) == 4 and template.SOPInstanceUID not in uids
    assert {ds.SeriesInstanceUID for ds in sets} != {template.SeriesInstanceUID}
    assert len({ds.SeriesInstanceUID for ds in sets}) == 1
    kept = ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "FrameOfReferenceUID", "Modality")
    for keyword in kept:
        assert all(ds[keyword].value == template[keyword].value for ds in sets), keyword
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_of(vol)
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    normal /= np.linalg.norm(normal)
    for k, ds in enumerate(sets):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.InstanceNumber == k + 1
        assert ds.SeriesDescription == template.SeriesDescription + " medsr"
        assert ds.SOPClassUID == template.SOPClassUID
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.PixelRepresentation) == (5, 6, 16, 1)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(3.0)
        assert float(ds.SliceThickness) == pytest.approx(3.0)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [1.3, 0.7])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        np.testing.assert_allclose(ipp, lps[:3, 3] + k * lps[:3, 2], atol=1e-6)
        assert float(ds.SliceLocation) == pytest.approx(float(ipp @ normal), abs=1e-6)
        assert "PixelPaddingValue" not in ds and not any(t.is_private for t in ds)
        np.testing.assert_array_equal(ds.pixel_array.T[2:], vol[0].numpy()[2:, :, k] + 1024)


def test_ct5n_round_trip_is_exact(tmp_path):
    src = read_dicom_series(CT5N)
    write_dicom_series(src, tmp_path)
    back = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(back.numpy(), src.numpy())
    np.testing.assert_allclose(affine_of(back), affine_of(src), atol=1e-9)
    assert back.meta["original_dtype"] == "int16" and back.meta["rescale"] == (1.0, -1024.0)
    np.testing.assert_array_equal(sitk_array_xyz(sitk_read(tmp_path)), sitk_array_xyz(sitk_read(CT5N)))


def test_float32_uses_a_fine_slope(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.uniform(-3.0, 5.0, size=(4, 3, 3)).astype(np.float32)
    template = str(sorted(CT5N.iterdir())[0])
    vol = make_volume(data, oblique_affine(), dicom_template=template, original_dtype="int16")
    write_dicom_series(vol, tmp_path, dtype="float32")
    ds = pydicom.dcmread(tmp_path / "IM_0001.dcm")
    slope = float(ds.RescaleSlope)
    assert slope == pytest.approx(float(data.max() - data.min()) / 65535, rel=1e-6)
    assert ds.PixelRepresentation == 1
    back = read_dicom_series(tmp_path)
    assert_same_world(
        data, affine_of(vol), back[0].numpy(), affine_of(back), atol_mm=1e-3, tol=slope / 2 + 1e-6
    )


def test_source_rescale_is_kept_and_values_beyond_the_stored_range_are_clipped(tmp_path):
    data = np.arange(-1030, -1030 + 48, dtype=np.float32).reshape(4, 4, 3)  # 6 below the uint16 CT range
    vol = make_volume(data, np.diag([0.5, 0.5, 2.0, 1.0]), original_dtype="uint16", rescale=(1.0, -1024.0))
    with pytest.warns(MedsrWarning, match=r"6 of 48 voxels .* stored range 0\.\.65535 .*6 below, 0 above"):
        write_dicom_series(vol, tmp_path)
    ds = pydicom.dcmread(tmp_path / "IM_0001.dcm")
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.PixelRepresentation) == (1.0, -1024.0, 0)
    np.testing.assert_array_equal(read_dicom_series(tmp_path)[0].numpy(), np.maximum(data, -1024))


def test_without_template_nifti_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.integers(0, 3000, size=(5, 4, 3)).astype(np.int16)
    affine = oblique_affine()
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    img = nib.load(tmp_path / "scan.nii.gz")
    vol = make_volume(
        np.asarray(img.dataobj), img.affine, format="nifti", original_dtype="int16",
        filename_or_obj=str(tmp_path / "scan.nii.gz"), modality="MR",
    )  # fmt: skip
    series = tmp_path / "series"
    series.mkdir()
    write_dicom_series(vol, series)
    ds = pydicom.dcmread(series / "IM_0001.dcm")
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and ds.Modality == "MR"
    assert ds.PatientID.startswith("MEDSR-") and ds.SeriesDescription == "scan.nii.gz medsr"
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
    back = read_dicom_series(series)
    assert_affine_matches_sitk(affine_of(back), sitk_read(series), atol=1e-3)
    nib.save(nib.Nifti1Image(back[0].numpy(), affine_of(back)), tmp_path / "back.nii.gz")
    again = nib.load(tmp_path / "back.nii.gz")
    assert_same_world(
        data.astype(np.float64), affine, np.asarray(again.dataobj), again.affine, atol_mm=1e-3, tol=0
    )


SHEARED = np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (make_volume(np.zeros((2, 3, 3, 2)), np.eye(4)), "one 3-D volume"),
        (make_volume(np.full((3, 3, 2), np.nan), np.eye(4)), "NaN"),
        (make_volume(np.zeros((3, 3, 2)), SHEARED), "sheared"),
    ],
    ids=["channels", "nan", "shear"],
)
def test_write_refuses(tmp_path, volume, message):
    with pytest.raises(MedsrError, match=message):
        write_dicom_series(volume, tmp_path)


def test_write_needs_an_empty_folder_and_known_dtype(tmp_path):
    vol = make_volume(np.zeros((3, 3, 2)), np.eye(4))
    (tmp_path / "x").write_text("x")
    with pytest.raises(MedsrError, match="existing, empty folder"):
        write_dicom_series(vol, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsrError, match="not one of float32, input"):
        write_dicom_series(vol, tmp_path / "empty", dtype="float64")
