"""Builders of hostile input files (damaged NIfTI/NRRD/MHA/DICOM, special files, evil checkpoints).

Each builder returns ``build(folder) -> path`` that writes one bad input into ``folder``; the corpus that
uses them is :mod:`tests.helpers.robustness`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from tests.helpers.dicom import CT5N, DATA, copy_ct5n
from tests.helpers.volumes import blob_volume, make_affine

SHAPE = (10, 9, 6)
AFFINE = make_affine((0.9, 1.1, 3.0), rng=np.random.default_rng(5), flips=(-1, 1, 1))


def sample_data(shape=SHAPE) -> np.ndarray:
    return blob_volume(shape, np.random.default_rng(2))


def nifti_builder(data: np.ndarray, affine: np.ndarray = AFFINE, **kw) -> Callable[[Path], Path]:
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


def raw_nifti(
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


def cut_short(build: Callable[[Path], Path], keep: float) -> Callable[[Path], Path]:
    def cut(d: Path) -> Path:
        path = build(d)
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * keep)])
        return path

    return cut


def patched(build: Callable[[Path], Path], offset: int, value: bytes) -> Callable[[Path], Path]:
    """Overwrite bytes of a built file (e.g. a NIfTI header field) after the fact."""

    def patch(d: Path) -> Path:
        path = build(d)
        raw = bytearray(path.read_bytes())
        raw[offset : offset + len(value)] = value
        path.write_bytes(bytes(raw))
        return path

    return patch


def raw_bytes(name: str, payload: bytes) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / name).write_bytes(payload)
        return d / name

    return build


def special_file(kind: str) -> Callable[[Path], Path]:
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


def itk_file(
    name: str, edit: Callable[[bytes], bytes] | None = None, drop_raw: bool = False
) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        image = sitk.GetImageFromArray(np.ascontiguousarray(sample_data().transpose(2, 1, 0)))
        image.SetSpacing((0.9, 1.1, 3.0))
        path = d / name
        sitk.WriteImage(image, str(path), useCompression=name.endswith(".nrrd"))
        if edit is not None:
            path.write_bytes(edit(path.read_bytes()))
        if drop_raw:
            path.with_suffix(".raw").unlink()
        return path

    return build


def header_dims(dims: str) -> Callable[[bytes], bytes]:
    return lambda raw: re.sub(rb"DimSize = [0-9 ]+", f"DimSize = {dims}".encode(), raw, count=1)


def ct_series(edit=None, extra: Callable[[Path], None] | None = None) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        folder = d / "series"
        copy_ct5n(folder, edit)
        if extra is not None:
            extra(folder)
        return folder

    return build


def add_second_series(folder: Path) -> None:
    ds = pydicom.dcmread(sorted(folder.iterdir())[0])
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "other_series.dcm")


def cut_header(folder: Path) -> None:
    last = sorted(folder.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:600])  # ends before SeriesInstanceUID


def pydicom_test_file(name: str, single: bool = True) -> Callable[[Path], Path]:
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


def enhanced_ct_file(d: Path) -> Path:
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


def tag_paths(k: int, ds: pydicom.Dataset) -> None:
    ds.SeriesDescription = "../../../escape/../../etc/passwd"
    ds.PatientName = "..\\..\\WINDOWS^/etc"
    ds.PatientID = "/tmp/x; rm -rf ~"
    ds.ProtocolName = "CON:AUX/*?"


class RunsACommand:
    """A pickle payload: unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def evil_checkpoint(path: Path, wrapping: str, marker: Path) -> Path:
    """A crafted pickle (plain, or inside a torch.save zip), proven to run its command when unpickled."""
    import pickle

    import torch

    if wrapping == "pickle":
        path.write_bytes(pickle.dumps(RunsACommand(marker)))
        pickle.loads(path.read_bytes())
    else:  # (torch.load picks its reader by suffix: prove the payload under a .pt name, then rename)
        staged = path.with_name("payload.pt")
        torch.save({"state_dict": RunsACommand(marker)}, staged)
        torch.load(staged, weights_only=False)
        staged.rename(path)
    assert marker.exists(), "the payload does not run: this test could not fail"
    marker.unlink()
    return path
