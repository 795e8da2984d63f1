"""Hostile-input corpus: every bad file is generated here, run through ``medsr infer``/``info`` and the API.

Each :class:`Case` builds one input and states what medsr must do with it: refuse it (exit 2, one line
naming the file and the problem, no output left), repair it with one warning line (finite output), or
accept it. docs/robustness.md is rendered from these cases (and the fault rows of tests/test_faults.py);
``python -m tests.test_robustness`` rewrites it and a test checks it is current.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.affines import apply_affine
from typer.testing import CliRunner

import medsr
from medsr import geometry
from medsr.cli.main import app
from medsr.errors import MedsrError, MedsrWarning
from medsr.evaluation.baselines import interpolate_upscale
from medsr.inference import selfsup as _selfsup  # noqa: F401  (a broken import fails, never skips)
from medsr.io.naming import default_output, safe_name
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of, make_volume
from medsr.io.writers import save_volume
from medsr.training import checkpoint as _checkpoint  # noqa: F401  (the loader the evil-model tests exercise)
from tests.conftest import blob_volume, make_affine, random_rotation
from tests.test_dicom import BROKEN, CT5N, DATA, copy_ct5n

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"
SHAPE = (10, 9, 6)
AFFINE = make_affine((0.9, 1.1, 3.0), rng=np.random.default_rng(5), flips=(-1, 1, 1))
runner = CliRunner()


# ---------------------------------------------------------------- builders


def _data(shape=SHAPE) -> np.ndarray:
    return blob_volume(shape, np.random.default_rng(2))


def _nifti(data: np.ndarray, affine: np.ndarray = AFFINE, **kw) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        img = nib.Nifti1Image(data, affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        for key, value in kw.items():
            img.header[key] = value
        path = d / "scan.nii.gz"
        nib.save(img, str(path))
        return path

    return build


def _raw_nifti(
    name: str,
    shape: tuple[int, ...],
    payload: bytes,
    *,
    dtype=np.float32,
    sform: np.ndarray | None = AFFINE,
    qform: np.ndarray | None = AFFINE,
) -> Callable[[Path], Path]:
    """A NIfTI file assembled byte by byte: header fields as given, then ``payload`` as the voxel data."""

    def build(d: Path) -> Path:
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(shape)
        hdr.set_data_dtype(dtype)
        hdr.set_xyzt_units("mm")
        hdr.set_zooms((0.9, 1.1, 3.0, 1.0)[: len(shape)])
        if qform is not None:
            hdr.set_qform(qform, code=1)
        if sform is not None:
            hdr["sform_code"] = 1
            hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = sform[:3]
        hdr["vox_offset"] = 352
        blob = hdr.binaryblock + b"\0" * 4 + payload
        path = d / name
        path.write_bytes(_gz(blob) if name.endswith(".gz") else blob)
        return path

    return build


def _gz(blob: bytes) -> bytes:
    import gzip

    return gzip.compress(blob, compresslevel=1)


def _cut(build: Callable[[Path], Path], keep: float) -> Callable[[Path], Path]:
    def cut(d: Path) -> Path:
        path = build(d)
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * keep)])
        return path

    return cut


def _patched(build: Callable[[Path], Path], offset: int, value: bytes) -> Callable[[Path], Path]:
    """Overwrite bytes of a built file (e.g. a NIfTI header field) after the fact."""

    def patch(d: Path) -> Path:
        path = build(d)
        raw = bytearray(path.read_bytes())
        raw[offset : offset + len(value)] = value
        path.write_bytes(bytes(raw))
        return path

    return patch


def _bytes(name: str, payload: bytes) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / name).write_bytes(payload)
        return d / name

    return build


def _special(kind: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        path = d / "scan.nii.gz"
        if kind == "fifo":
            if not hasattr(os, "mkfifo"):
                pytest.skip("no named pipes on this system")
            os.mkfifo(path)
            _unblock_later(path)
        else:
            if not Path(os.devnull).exists():
                pytest.skip("no null device")
            path.symlink_to(os.devnull)
        return path

    return build


def _unblock_later(fifo: Path, after_s: float = 20.0) -> None:
    """Should a reader block on ``fifo`` (the bug this guards against), open it for writing so the test ends."""

    def poke() -> None:
        time.sleep(after_s)
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=poke, daemon=True).start()


def _itk(
    name: str, edit: Callable[[bytes], bytes] | None = None, drop_raw: bool = False
) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        image = sitk.GetImageFromArray(np.ascontiguousarray(_data().transpose(2, 1, 0)))
        image.SetSpacing((0.9, 1.1, 3.0))
        path = d / name
        sitk.WriteImage(image, str(path), useCompression=name.endswith(".nrrd"))
        if edit is not None:
            path.write_bytes(edit(path.read_bytes()))
        if drop_raw:
            path.with_suffix(".raw").unlink()
        return path

    return build


def _header_dims(dims: str) -> Callable[[bytes], bytes]:
    return lambda raw: re.sub(rb"DimSize = [0-9 ]+", f"DimSize = {dims}".encode(), raw, count=1)


def _series(edit=None, extra: Callable[[Path], None] | None = None) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        folder = d / "series"
        copy_ct5n(folder, edit)
        if extra is not None:
            extra(folder)
        return folder

    return build


def _second_series(folder: Path) -> None:
    ds = pydicom.dcmread(sorted(folder.iterdir())[0])
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "other_series.dcm")


def _cut_header(folder: Path) -> None:
    last = sorted(folder.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:600])  # ends before SeriesInstanceUID


def _test_file(name: str, single: bool = True) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        path = DATA / name
        if not single:
            folder = d / "series"
            folder.mkdir()
            shutil.copy(path, folder / name)
            return folder
        shutil.copy(path, d / name)
        return d / name

    return build


def _enhanced_ct(d: Path) -> Path:
    """Five CT5N slices packed into one Enhanced CT multi-frame object (functional groups, no top-level IPP)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    slices = sorted(
        (pydicom.dcmread(p) for p in sorted(CT5N.iterdir())), key=lambda s: float(s.ImagePositionPatient[2])
    )
    ds = slices[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.EnhancedCTImageStorage
    ds.NumberOfFrames = len(slices)
    measures, orient = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = ds.PixelSpacing, ds.SliceThickness
    orient.ImageOrientationPatient = ds.ImageOrientationPatient
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orient])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for s in slices:
        pos, group = Dataset(), Dataset()
        pos.ImagePositionPatient = s.ImagePositionPatient
        group.PlanePositionSequence = Sequence([pos])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.PixelData = b"".join(s.PixelData for s in slices)
    path = d / "enhanced_ct.dcm"
    ds.save_as(path)
    return path


def _tag_paths(k: int, ds: pydicom.Dataset) -> None:
    ds.SeriesDescription = "../../../escape/../../etc/passwd"
    ds.PatientName = "..\\..\\WINDOWS^/etc"
    ds.PatientID = "/tmp/x; rm -rf ~"
    ds.ProtocolName = "CON:AUX/*?"


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One hostile input and the behaviour medsr promises for it."""

    id: str
    input: str  # what the file is (docs/robustness.md)
    build: Callable[[Path], Path]
    outcome: str  # "refused" (exit 2), "repaired" (warning, exit 0) or "accepted" (exit 0)
    message: str = ""  # medsr's own words the error or warning line must contain
    stage: str = "read"  # "read": load_volume and `medsr info` refuse it too; "upscale": only upscaling


NAN_DATA = _data().copy()
NAN_DATA[1, 2, 3], NAN_DATA[4, 4, 0], NAN_DATA[5, 1, 2] = np.nan, np.inf, -np.inf
SHEARED = AFFINE.copy()
SHEARED[:3, 2] += 0.8 * AFFINE[:3, 0]  # the slice axis leans along the first axis: a gantry tilt
QFORM = AFFINE.copy()
QFORM[:3, 3] += [4.0, -2.0, 6.0]
SINGULAR = AFFINE.copy()
SINGULAR[:3, 2] = 0.0
FLOAT_VOXELS = _data().tobytes(order="F")

CASES = [
    # NIfTI: damaged files
    Case(
        "nifti-truncated-gz",
        "`.nii.gz` cut in half",
        _cut(_nifti(_data()), 0.5),
        "refused",
        "its compressed stream ends early",
    ),
    Case(
        "nifti-truncated",
        "`.nii` missing its last 100 bytes",
        _raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS[:-100]),
        "refused",
        "truncated: the header declares (10, 9, 6) float32 voxels (2160 bytes from byte 352) but the file "
        "holds only 2060 bytes",
    ),
    Case(
        "nifti-junk-gz",
        "random bytes named `.nii.gz`",
        _bytes("scan.nii.gz", os.urandom(3000)),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-junk",
        "random bytes named `.nii`",
        _bytes("scan.nii", b"\x07" * 3000),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-empty",
        "empty file named `.nii.gz`",
        _bytes("scan.nii.gz", b""),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-dims-more",
        "header declares 60 slices, data holds 6 (`.nii.gz`)",
        _raw_nifti("scan.nii.gz", (10, 9, 60), FLOAT_VOXELS),
        "refused",
        "truncated: the header declares (10, 9, 60) float32 voxels",
    ),
    Case(
        "nifti-dims-fewer",
        "header declares 3 slices, data holds 6 (`.nii`)",
        _raw_nifti("scan.nii", (10, 9, 3), FLOAT_VOXELS),
        "refused",
        "the header dimensions disagree with the data: the file holds 1080 bytes (3 slices) more",
    ),
    Case(
        "nifti-dims-huge",
        "header declares 30000 x 30000 x 30000 voxels",
        _raw_nifti("scan.nii.gz", (30000, 30000, 30000), FLOAT_VOXELS),
        "refused",
        "header declares dimensions (30000, 30000, 30000) (2.7e+13 voxels), beyond what medsr will allocate",
    ),
    Case(
        "nifti-dims-4gb",
        "tiny `.nii.gz` declaring 1000^3 float32 (4 GB, under the voxel cap)",
        _raw_nifti("scan.nii.gz", (1000, 1000, 1000), FLOAT_VOXELS),
        "refused",
        "compressed file cannot hold that much (deflate expands at most 1032:1)",
    ),
    Case(
        "nifti-dim-zero",
        "a dimension of 0 voxels",
        _raw_nifti("scan.nii", (10, 9, 0), b""),
        "refused",
        "declares an empty volume (10, 9, 0)",
    ),
    Case(
        "nifti-bad-datatype",
        "unknown datatype code",
        _patched(_raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS), 70, np.int16(1234).tobytes()),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-complex",
        "complex-valued voxels",
        _nifti(_data().astype(np.complex64)),
        "refused",
        "holds complex voxels (complex64); medsr upscales real-valued images",
    ),
    Case(
        "fifo",
        "a named pipe called `scan.nii.gz` (would block a reader)",
        _special("fifo"),
        "refused",
        "not a regular file or folder (a pipe, socket or device)",
    ),
    Case(
        "device",
        "`scan.nii.gz` linked to the null device",
        _special("device"),
        "refused",
        "not a regular file or folder",
    ),
    # NIfTI: shapes and values
    Case(
        "nifti-2d",
        "a 2-D image",
        _nifti(_data()[:, :, 0]),
        "refused",
        "is 2-D (10, 9); medsr upscales 3-D volumes",
    ),
    Case(
        "nifti-4d",
        "a 4-D series without `--volume-index`",
        _nifti(np.stack([_data()] * 3, -1)),
        "refused",
        "is 4-D (10, 9, 6, 3); medsr upscales 3-D volumes: pass one volume with --volume-index (0..2)",
    ),
    Case(
        "nifti-one-slice",
        "a single slice (10 x 9 x 1)",
        _nifti(_data()[:, :, :1]),
        "refused",
        "has a single slice along axis 2",
        "upscale",
    ),
    Case(
        "nifti-nan-inf",
        "NaN, +Inf and -Inf voxels",
        _nifti(NAN_DATA),
        "repaired",
        "1 NaN voxel(s) set to 0 and 2 infinite voxel(s) clipped to the finite range",
        "upscale",
    ),
    Case(
        "nifti-all-nan",
        "every voxel NaN",
        _nifti(np.full(SHAPE, np.nan, np.float32)),
        "refused",
        "every voxel is NaN or infinite",
        "upscale",
    ),
    Case("nifti-zero", "all-zero volume", _nifti(np.zeros(SHAPE, np.float32)), "accepted"),
    Case(
        "nifti-constant",
        "constant volume (every voxel 7)",
        _nifti(np.full(SHAPE, 7.0, np.float32)),
        "accepted",
    ),
    Case(
        "nifti-anisotropy-20",
        "20:1 anisotropy (0.5 x 0.5 x 10 mm)",
        _nifti(_data(), make_affine((0.5, 0.5, 10.0), rng=np.random.default_rng(8))),
        "accepted",
    ),
    # NIfTI: geometry
    Case(
        "nifti-singular",
        "singular sform (a zero column), no qform",
        _raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=SINGULAR, qform=None),
        "refused",
        "the sform affine is singular",
    ),
    Case(
        "nifti-nonfinite",
        "NaN in the sform",
        _raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=np.where(np.eye(4) > 0, np.nan, 0.0), qform=None),
        "refused",
        "the sform affine is not finite",
    ),
    Case(
        "nifti-sheared",
        "sheared (non-orthogonal) sform, e.g. an uncorrected gantry tilt",
        _nifti(_data(), SHEARED),
        "repaired",
        "affine is sheared",
    ),
    Case(
        "nifti-sform-qform",
        "sform and qform that disagree by 7.5 mm",
        _raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=AFFINE, qform=QFORM),
        "repaired",
        "the sform and qform disagree by up to 7.48 mm; medsr uses the sform",
    ),
    Case(
        "nifti-no-orientation",
        "sform and qform codes both 0",
        _raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=None, qform=None),
        "repaired",
        "no sform or qform (both codes 0), so the orientation is unknown",
    ),
    # NRRD / MetaImage
    Case(
        "mha-truncated",
        "`.mha` missing its last 500 bytes",
        _itk("scan.mha", lambda b: b[:-500]),
        "refused",
        "truncated: the header declares (10, 9, 6)",
    ),
    Case(
        "mha-dims-huge",
        "`.mha` declaring 100000^3 voxels",
        _itk("scan.mha", _header_dims("100000 100000 100000")),
        "refused",
        "beyond what medsr will allocate",
    ),
    Case(
        "mha-dims-2gb",
        "`.mha` declaring 1000 x 1000 x 500 float32 over 2 kB of data",
        _itk("scan.mha", _header_dims("1000 1000 500")),
        "refused",
        "truncated: the header declares (1000, 1000, 500)",
    ),
    Case(
        "mhd-no-raw",
        "`.mhd` whose data file is missing",
        _itk("scan.mhd", drop_raw=True),
        "refused",
        "its header names the data file 'scan.raw', which is missing",
    ),
    Case(
        "nrrd-truncated",
        "gzip `.nrrd` missing its last 200 bytes",
        _itk("scan.nrrd", lambda b: b[:-200]),
        "refused",
        "not a readable NRRD file",
    ),
    Case(
        "nrrd-junk",
        "random bytes named `.nrrd`",
        _bytes("scan.nrrd", b"\x01\x02" * 700),
        "refused",
        "not a readable NRRD file",
    ),
    # DICOM
    Case(
        "dicom-missing-slice",
        "series with a slice missing",
        _series(BROKEN["missing-slice"][0]),
        "refused",
        "non-uniform slice spacing: expected 2.500 mm",
    ),
    Case(
        "dicom-duplicate",
        "two slices at the same position",
        _series(BROKEN["duplicate"][0]),
        "refused",
        "duplicate slice position",
    ),
    Case(
        "dicom-mixed-series",
        "two series in one folder",
        _series(extra=_second_series),
        "refused",
        "holds 2 DICOM series; pass --series UID with one of",
    ),
    Case(
        "dicom-mixed-orientation",
        "one slice tilted 5.7 degrees",
        _series(BROKEN["mixed-orientation"][0]),
        "refused",
        "slices have different orientations",
    ),
    Case(
        "dicom-no-position",
        "a slice without ImagePositionPatient",
        _series(BROKEN["missing-ipp"][0]),
        "refused",
        "missing ImagePositionPatient",
    ),
    Case(
        "dicom-cut-header",
        "a slice cut off inside its header",
        _series(extra=_cut_header),
        "refused",
        "DICOM file without SeriesInstanceUID or SOPInstanceUID: it is truncated or damaged",
    ),
    Case(
        "dicom-cut-pixels",
        "a slice cut off inside its pixel data (pydicom's MR_truncated.dcm)",
        _test_file("MR_truncated.dcm"),
        "refused",
        "pixel data cannot be read",
    ),
    Case(
        "dicom-huge-rows",
        "slices declaring 60000 x 60000 pixels",
        _series(lambda k, ds: setattr(ds, "Rows", 60000) or setattr(ds, "Columns", 60000)),
        "refused",
        "beyond what medsr will allocate",
    ),
    Case(
        "dicom-jpeg-ls",
        "JPEG-LS compressed pixels, no decoder installed",
        _test_file("MR_small_jpeg_ls_lossless.dcm"),
        "refused",
        "cannot decode its JPEG-LS Lossless Image Compression pixel data",
    ),
    Case(
        "dicom-sr",
        "a structured report (pydicom's test-SR.dcm)",
        _test_file("test-SR.dcm", single=False),
        "refused",
        "not an image (Modality SR, Comprehensive SR Storage",
    ),
    Case(
        "dicom-rtstruct",
        "an RT structure set (pydicom's rtstruct.dcm)",
        _test_file("rtstruct.dcm", single=False),
        "refused",
        "not an image (Modality RTSTRUCT, RT Structure Set Storage",
    ),
    Case(
        "dicom-rtdose",
        "a 15-frame RT dose grid (pydicom's rtdose.dcm)",
        _test_file("rtdose.dcm"),
        "refused",
        "multi-frame DICOM (RT Dose Storage, 15 frames) is not supported yet",
    ),
    Case(
        "dicom-enhanced-ct",
        "an Enhanced CT multi-frame object",
        _enhanced_ct,
        "refused",
        "multi-frame DICOM (Enhanced CT Image Storage, 5 frames) is not supported yet",
    ),
    Case(
        "dicom-path-tags",
        "tags holding paths and shell text (`../../etc/passwd`, `rm -rf ~`)",
        _series(_tag_paths),
        "accepted",
    ),
]
BY_ID = {case.id: case for case in CASES}


# ---------------------------------------------------------------- helpers


def _run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _build(case: Case, tmp_path: Path) -> Path:
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    if case.id == "dicom-jpeg-ls" and _jpeg_ls_decodes():
        pytest.skip("a JPEG-LS decoder is installed here")
    return case.build(src_dir)


def _jpeg_ls_decodes() -> bool:
    try:
        _ = pydicom.dcmread(DATA / "MR_small_jpeg_ls_lossless.dcm").pixel_array
    except Exception:
        return False
    return True


def _input_corners(src: Path) -> np.ndarray:
    """World RAS corners of the input grid by an independent reader (nibabel's sform or SimpleITK)."""
    if src.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(src)))
        image = reader.Execute()
        size = image.GetSize()
        corners = [
            image.TransformContinuousIndexToPhysicalPoint([a, b, c])
            for a in (-0.5, size[0] - 0.5)
            for b in (-0.5, size[1] - 0.5)
            for c in (-0.5, size[2] - 0.5)
        ]
        return np.array(corners) * [-1.0, -1.0, 1.0]
    img = nib.load(str(src))
    return geometry.extent_corners(img.shape[:3], img.affine)


def _check_output(case: Case, src: Path, out: Path) -> np.ndarray:
    img = nib.load(str(out))
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all(), f"{case.id}: output has NaN/Inf"
    corners = geometry.extent_corners(img.shape, img.affine)
    np.testing.assert_allclose(corners, _input_corners(src), atol=2e-3)  # same physical extent
    np.testing.assert_allclose(
        img.get_qform(), img.get_sform(), atol=1e-4 if case.id != "nifti-sheared" else 10
    )
    return data


# ---------------------------------------------------------------- the corpus through the CLI and the API


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli(case: Case, tmp_path: Path) -> None:
    src = _build(case, tmp_path)
    before = _files(tmp_path / "in")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "up.nii.gz"
    result = _run("infer", src, "--method", "bspline", "-o", out)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    assert _files(tmp_path / "in") == before, "the input was modified"
    if case.outcome == "refused":
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and lines[0].startswith("medsr: error: "), lines
        assert str(src) in lines[0] and case.message in lines[0], lines[0]
        if case.id == "dicom-jpeg-ls":
            assert "pip install pylibjpeg" in lines[0] and "python-gdcm" in lines[0]  # what to install
        assert list(out_dir.iterdir()) == [], "output left behind"
        return
    assert result.exit_code == 0, result.output
    warned = [line for line in lines if line.startswith("medsr: warning: ")]
    assert lines == warned
    if case.outcome == "repaired":
        assert len(warned) == 1 and str(src) in warned[0] and case.message in warned[0], lines
    else:
        assert warned == []
    assert sorted(p.name for p in out_dir.iterdir()) == ["up.json", "up.nii.gz"]
    data = _check_output(case, src, out)
    if case.id == "nifti-zero":
        assert not data.any()
    if case.id == "nifti-constant":
        np.testing.assert_allclose(data, 7.0, atol=1e-4)
    if case.id == "nifti-anisotropy-20":
        assert data.shape == (10, 9, 120)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.stage == "read" and c.outcome == "refused"], ids=lambda c: c.id
)
def test_info_refuses_on_read(case: Case, tmp_path: Path) -> None:
    src = _build(case, tmp_path)
    result = _run("info", src)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert case.message in result.stderr and str(src) in result.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_api(case: Case, tmp_path: Path) -> None:
    src = _build(case, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MedsrWarning)
        if case.outcome == "refused":
            with pytest.raises(MedsrError) as err:
                medsr.upscale(src, method="bspline")
            assert case.message in str(err.value) and str(src) in str(err.value)
            if case.stage == "read":
                with pytest.raises(MedsrError, match=re.escape(case.message)):
                    load_volume(src)
            return
        out = medsr.upscale(src, method="bspline")
    ours = [w for w in caught if issubclass(w.category, MedsrWarning)]
    assert len(ours) == (case.outcome == "repaired"), [str(w.message) for w in ours]
    if ours:
        assert case.message in str(ours[0].message)
    assert np.isfinite(out.numpy()).all()
    if case.id == "nifti-nan-inf":
        assert out.meta["medsr"]["non_finite_replaced"] == {"nan": 1, "posinf": 1, "neginf": 1}


@pytest.mark.parametrize(
    "case_id", ["nifti-dims-huge", "nifti-dims-4gb", "mha-dims-huge", "mha-dims-2gb", "dicom-huge-rows"]
)
def test_large_declared_sizes_are_refused_before_allocating(
    case_id: str, tmp_path: Path, monkeypatch
) -> None:
    src = _build(BY_ID[case_id], tmp_path)

    def no_execute(self):  # SimpleITK allocates outside Python's sight: it must not even start
        raise AssertionError("ImageFileReader.Execute was called")

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", no_execute)
    tracemalloc.start()
    try:
        with pytest.raises(MedsrError, match=re.escape(BY_ID[case_id].message)):
            load_volume(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_four_d_with_a_volume_index_is_accepted(tmp_path: Path) -> None:
    src = _build(BY_ID["nifti-4d"], tmp_path)
    result = _run("infer", src, "--method", "linear", "--volume-index", "2", "-o", tmp_path / "v2.nii.gz")
    assert result.exit_code == 0, result.output
    assert nib.load(str(tmp_path / "v2.nii.gz")).shape[:2] == SHAPE[:2]


def test_sform_wins_and_the_output_is_consistent(tmp_path: Path) -> None:
    """sform/qform disagreement: the output carries the sform geometry in both, so ITK reads it the same."""
    src = _build(BY_ID["nifti-sform-qform"], tmp_path)
    out = tmp_path / "up.nii.gz"
    assert _run("infer", src, "--method", "linear", "--factor", "2", "-o", out).exit_code == 0
    img = nib.load(str(out))
    expected = geometry.upscaled_grid(SHAPE, AFFINE, 2, 2.0)[1]
    np.testing.assert_allclose(img.get_sform(), expected, atol=1e-4)
    np.testing.assert_allclose(img.get_qform(), expected, atol=1e-4)
    image = sitk.ReadImage(str(out))
    idx = [3.0, 2.0, 7.0]
    ras = np.array(image.TransformContinuousIndexToPhysicalPoint(idx)) * [-1, -1, 1]
    np.testing.assert_allclose(ras, apply_affine(expected, idx), atol=1e-3)


def test_sheared_input_keeps_its_sform(tmp_path: Path) -> None:
    src = _build(BY_ID["nifti-sheared"], tmp_path)
    with pytest.warns(MedsrWarning, match="sheared"):
        volume = load_volume(src)
    # docs/robustness.md "keep it exactly": the sform bit for bit as NIfTI stores it (float32)
    np.testing.assert_array_equal(affine_of(volume), SHEARED.astype(np.float32).astype(np.float64))
    out = medsr.upscale(volume, method="linear", factor=3)
    np.testing.assert_allclose(affine_of(out), geometry.upscaled_grid(SHAPE, SHEARED, 2, 3.0)[1], atol=1e-9)


@pytest.mark.slow
def test_selfsup_on_flat_volumes_is_finite() -> None:
    """Zero and constant volumes must not divide by a zero intensity range (selfsup normalises)."""
    for value in (0.0, 7.0):
        volume = make_volume(np.full((12, 12, 5), value, np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
        out = medsr.upscale(volume, method="selfsup", steps=2, progress=False, device="cpu")
        np.testing.assert_allclose(out.numpy(), value, atol=1e-3)


# ---------------------------------------------------------------- paths


def test_dicom_tags_never_name_files(tmp_path: Path) -> None:
    """Tags holding paths and shell text end up in tag values only; every file is written inside the output."""
    src = _build(BY_ID["dicom-path-tags"], tmp_path)
    outside = sorted(p.name for p in tmp_path.parent.iterdir())
    result = _run("infer", src, "--method", "nearest", "--factor", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == outside
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.parent.name != "series")
    slices = [f"in/series_medsr/IM_{k:04d}.dcm" for k in range(1, 11)]
    assert written == ["in", "in/series", "in/series_medsr", "in/series_medsr.json", *slices]
    ds = pydicom.dcmread(tmp_path / "in" / "series_medsr" / "IM_0001.dcm")
    assert ds.SeriesDescription.startswith("../../../escape")  # kept as a value, harmless


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_safe_name_stays_inside_any_folder(text: str) -> None:
    name = safe_name(text)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,119}", name), (
        name
    )  # no dot or dash first, no separator
    folder = Path("/data/out")
    assert (folder / name).parent == folder
    for scan in (Path("/in") / (name + ".nii.gz"), Path("/in") / name):
        assert default_output(scan, folder=folder).parent == folder


def test_batch_names_from_odd_file_names_stay_in_the_output_folder(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    names = ["-o.nii.gz", "a b;rm -rf ~.nii.gz", "évolution.nii.gz", "..hidden.nii.gz", "$(touch x).nii.gz"]
    for name in names:
        nib.save(nib.Nifti1Image(_data(), AFFINE), str(scans / name))
    out = tmp_path / "out"
    result = _run("infer", scans, "-o", out, "--method", "nearest", "--factor", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        ["o_medsr.json", "o_medsr.nii.gz", "a_b_rm_-rf_medsr.json", "a_b_rm_-rf_medsr.nii.gz",
         "volution_medsr.json", "volution_medsr.nii.gz", "touch_x_medsr.json", "touch_x_medsr.nii.gz",
         "medsr_batch.json"]
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scans"]


# ---------------------------------------------------------------- geometry of hostile affines (hypothesis)


@st.composite
def any_affine(draw) -> np.ndarray:
    """Rotated, flipped, anisotropic and possibly sheared affines."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols = random_rotation(rng, max_angle_deg=draw(st.floats(0, 180))) @ np.diag(
        [draw(st.floats(0.3, 6.0)) * draw(st.sampled_from([-1, 1])) for _ in range(3)]
    )
    shear = np.eye(3)
    shear[0, 2], shear[1, 2] = draw(st.floats(-0.6, 0.6)), draw(st.floats(-0.6, 0.6))
    affine = np.eye(4)
    affine[:3, :3] = cols @ shear
    affine[:3, 3] = [draw(st.floats(-300, 300)) for _ in range(3)]
    return affine


@settings(max_examples=25, deadline=None)
@given(affine=any_affine(), factor=st.floats(1.2, 6.0), suffix=st.sampled_from([".nii.gz", ".mha"]))
def test_upscaled_files_keep_extent_for_any_affine(tmp_path_factory, affine, factor, suffix) -> None:
    """Any affine (sheared too) and factor: the written output covers the input's extent, read back by nibabel/ITK."""
    folder = tmp_path_factory.mktemp("g")
    volume = make_volume(_data((5, 4, 3)), affine)
    out = interpolate_upscale(volume, 2, factor, "linear")
    path = folder / f"up{suffix}"
    save_volume(out, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsrWarning)
        back = load_volume(path)
    np.testing.assert_allclose(affine_of(back), affine_of(out), atol=1e-4 * max(1.0, np.abs(affine).max()))
    corners = geometry.extent_corners(back.shape[1:], affine_of(back))
    np.testing.assert_allclose(corners, geometry.extent_corners((5, 4, 3), affine), atol=1e-3)
    if suffix == ".nii.gz":
        np.testing.assert_allclose(
            nib.load(str(path)).affine, affine_of(out), atol=1e-4 * max(1.0, np.abs(affine).max())
        )


# ---------------------------------------------------------------- damaged files (hypothesis): never a traceback


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory) -> dict[str, bytes]:
    """One small valid file per format, to be damaged byte by byte."""
    folder = tmp_path_factory.mktemp("seeds")
    data = _data((6, 5, 4))
    seeds = {}
    for suffix in (".nii", ".nii.gz"):
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"s{suffix}"))
    for suffix in (".nrrd", ".mha"):
        image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
        sitk.WriteImage(image, str(folder / f"s{suffix}"), useCompression=suffix == ".nrrd")
    for suffix in (".nii", ".nii.gz", ".nrrd", ".mha"):
        seeds[suffix] = (folder / f"s{suffix}").read_bytes()
    seeds[".dcm"] = sorted(CT5N.iterdir())[0].read_bytes()
    return seeds


@settings(max_examples=200, deadline=None)
@given(
    suffix=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha", ".dcm"]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    keep=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_damaged_files_give_a_medsr_error_or_a_volume(
    seed_files, tmp_path_factory, suffix, edits, keep
) -> None:
    """Bytes changed (mostly in the header) and/or the end cut off: a MedsrError naming the file, or a volume."""
    raw = bytearray(seed_files[suffix])
    span = len(raw) if suffix == ".nii.gz" else min(len(raw), 512)
    for position, value in edits:
        raw[position % span] = value
    if keep is not None:
        raw = raw[: int(len(raw) * keep)]
    path = tmp_path_factory.mktemp("damaged") / f"scan{suffix}"
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            volume = load_volume(path)
        except MedsrError as err:
            assert str(path) in str(err)
        else:
            assert volume.ndim == 4 and np.all(np.isfinite(affine_of(volume)))


# ---------------------------------------------------------------- untrusted checkpoints (--model)


class _RunsACommand:
    """A pickle payload: unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _evil_checkpoint(path: Path, wrapping: str, marker: Path) -> Path:
    """A crafted pickle (plain, or inside a torch.save zip), proven to run its command when unpickled."""
    import pickle

    import torch

    if wrapping == "pickle":
        path.write_bytes(pickle.dumps(_RunsACommand(marker)))
        pickle.loads(path.read_bytes())
    else:  # (torch.load picks its reader by suffix: prove the payload under a .pt name, then rename)
        staged = path.with_name("payload.pt")
        torch.save({"state_dict": _RunsACommand(marker)}, staged)
        torch.load(staged, weights_only=False)
        staged.rename(path)
    assert marker.exists(), "the payload does not run: this test could not fail"
    marker.unlink()
    return path


CHECKPOINTS = [
    ("a pickle that runs a shell command, named `evil.pt`, `evil.pth`, `evil.ckpt`, `evil.safetensors`, `evil`",
     "test_model_that_runs_a_command_is_refused[pickle-*]",
     "refuses it before unpickling anything: exit 2, `medsr never unpickles checkpoints`; the command never runs"),
    ("the same payload inside a `torch.save` zip (`.pt`, `.safetensors`...)",
     "test_model_that_runs_a_command_is_refused[torch.save-*]", "the same"),
    ("a safetensors header whose length field points past the end of the file",
     "test_damaged_safetensors_model_is_refused", "refused: exit 2, `not a safetensors checkpoint`"),
    ("a batch run with such a `--model`", "test_batch_with_an_evil_model_fails_each_scan_cleanly",
     "each scan fails with that reason in the report, exit 1, nothing runs"),
]  # fmt: skip


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth", "evil.ckpt", "evil.safetensors", "evil"])
@pytest.mark.parametrize("wrapping", ["pickle", "torch.save"])
def test_model_that_runs_a_command_is_refused(tmp_path: Path, wrapping: str, name: str) -> None:
    marker = tmp_path / "pwned"
    model = _evil_checkpoint(tmp_path / name, wrapping, marker)
    src = _nifti(_data())(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = _run("infer", src, "--model", model, "-o", out / "up.nii.gz")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0] and "never unpickles checkpoints" in lines[0], lines
    assert not marker.exists(), "medsr ran code from the checkpoint"
    assert list(out.iterdir()) == []
    with pytest.raises(MedsrError, match="never unpickles"):
        medsr.upscale(src, model=model)
    assert not marker.exists()


def test_damaged_safetensors_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "cut.safetensors"
    model.write_bytes((10**6).to_bytes(8, "little") + b'{"w": {"dtype": "F32"')
    src = _nifti(_data())(tmp_path)
    result = _run("infer", src, "--model", model, "-o", tmp_path / "up.nii.gz")
    assert result.exit_code == 2 and "not a safetensors checkpoint" in result.stderr, result.output
    assert not (tmp_path / "up.nii.gz").exists()


def test_batch_with_an_evil_model_fails_each_scan_cleanly(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = _evil_checkpoint(tmp_path / "model.safetensors", "torch.save", marker)
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        nib.save(nib.Nifti1Image(_data(), AFFINE), str(scans / f"s{i}.nii.gz"))
    result = _run("infer", scans, "--model", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "out" / "medsr_batch.json").read_text())
    assert len(report["failed"]) == 2 and all("never unpickles" in f["error"] for f in report["failed"])
    assert not marker.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "medsr_batch.json"
    ]


# ---------------------------------------------------------------- docs/robustness.md


_START, _END = "<!-- generated: corpus -->", "<!-- end generated -->"
_OUTCOME = {
    "refused": "refuses it: exit 2, one line, no output",
    "repaired": "repairs it, one warning line, exit 0",
    "accepted": "upscales it, exit 0",
}


def render_table() -> str:
    """The generated part of docs/robustness.md: the corpus and the fault rows of tests/test_faults.py."""
    from tests.test_faults import FAULTS

    rows = [
        "| Bad input | Case id | What medsr does | The message says (asserted by the tests) |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        said = f"`{case.message}`" if case.message else "(no message)"
        rows.append(f"| {case.input} | `{case.id}` | {_OUTCOME[case.outcome]} | {said} |")
    faults = ["| Fault | Test | What medsr does |", "|---|---|---|"]
    faults += [f"| {fault} | `{test}` | {does} |" for fault, test, does in FAULTS]
    models = ["| Untrusted `--model` file | Test | What medsr does |", "|---|---|---|"]
    models += [f"| {what} | `{test}` | {does} |" for what, test, does in CHECKPOINTS]
    paths = ["| Path hazard | Test | What medsr does |", "|---|---|---|"]
    paths += [f"| {what} | `{test}` | {does} |" for what, test, does in PATHS]
    props = ["| Property (hypothesis) | Test | What holds |", "|---|---|---|"]
    props += [f"| {what} | `{test}` | {does} |" for what, test, does in PROPERTIES]
    return "\n".join([_START, "", *rows, "", *faults, "", *models, "", *paths, "", *props, "", _END])


PATHS = [
    ("DICOM tags holding `../../etc/passwd`, `..\\..\\WINDOWS`, `rm -rf ~`", "test_dicom_tags_never_name_files",
     "files are named `IM_0001.dcm`... inside `<folder>_medsr/`; the tags are copied as values only"),
    ("any text used as a name (hypothesis, 300 examples)", "test_safe_name_stays_inside_any_folder",
     "`safe_name` keeps `A-Z a-z 0-9 . _ -`, no leading dot or dash, 120 characters at most"),
    ("batch inputs named `-o.nii.gz`, `a b;rm -rf ~.nii.gz`, `$(touch x).nii.gz`, `évolution.nii.gz`, `..hidden.nii.gz`",
     "test_batch_names_from_odd_file_names_stay_in_the_output_folder",
     "outputs `o_medsr`, `a_b_rm_-rf_medsr`, `touch_x_medsr`, `volution_medsr` in the output folder; dot files skipped"),
]  # fmt: skip


PROPERTIES = [
    ("any NIfTI/NRRD/MHA/DICOM file with random bytes changed and/or its end cut off (200 examples)",
     "test_damaged_files_give_a_medsr_error_or_a_volume",
     "a MedsrError naming the file, or a readable volume; never another exception"),
    ("any oblique, flipped, anisotropic or sheared affine, any factor, NIfTI or MHA output (25 examples)",
     "test_upscaled_files_keep_extent_for_any_affine", "the written output covers the input's physical extent"),
    ("any order of a series' files", "tests/test_dicom_properties.py::test_any_order_of_the_files_gives_the_same_volume",
     "the same volume and affine"),
    ("any file names, sub-folders, InstanceNumber and SliceLocation",
     "tests/test_dicom_properties.py::test_names_folders_and_instance_numbers_do_not_matter", "the same volume and affine"),
    ("any junk file beside a series (random bytes, DICOM-like prefixes)",
     "tests/test_dicom_properties.py::test_junk_beside_the_series_is_skipped_or_named",
     "skipped (the same volume), or a MedsrError naming that file"),
    ("any run of consecutive slices", "tests/test_dicom_properties.py::test_any_run_of_slices_is_the_matching_sub_volume",
     "the matching sub-volume, its affine shifted to the first slice"),
    ("any interior slice missing, or any slice twice",
     "tests/test_dicom_properties.py::test_a_gap_or_a_twin_slice_is_always_refused", "refused (non-uniform spacing / duplicate position)"),
    ("any oblique grid written as DICOM and read back",
     "tests/test_dicom_properties.py::test_write_then_read_puts_every_voxel_back_in_place",
     "every voxel back at the same world position with the same value"),
]  # fmt: skip


def test_docs_table_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert _START in text and _END in text, f"{DOC} lost its generated-table markers"
    current = text[text.index(_START) : text.index(_END) + len(_END)]
    assert current == render_table(), f"{DOC} is out of date: run `python -m tests.test_robustness`"


def test_every_row_names_a_real_test() -> None:
    from tests import test_dicom_properties

    for _, test, _ in [*CHECKPOINTS, *PATHS, *PROPERTIES]:
        module, _, name = test.rpartition("::")
        scope = vars(test_dicom_properties) if module else globals()
        assert callable(scope.get(name.split("[")[0])), test


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    head, tail = text[: text.index(_START)], text[text.index(_END) + len(_END) :]
    DOC.write_text(head + render_table() + tail, encoding="utf-8")
    print(f"wrote {DOC}")
