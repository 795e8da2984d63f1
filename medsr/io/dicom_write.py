"""Write a volume as a derived classic DICOM series: one explicit-VR little-endian file per slice.

Slice ``k`` of the (X, Y, Z) array becomes ``IM_{k+1:04d}.dcm`` with ``pixel_array[j, i] = volume[i, j, k]``
(the inverse of :func:`medsr.io.dicom.read_dicom_series`). Geometry comes from the RAS affine turned to
LPS: ImageOrientationPatient from the first two columns, PixelSpacing from their lengths,
ImagePositionPatient ``origin + k * column_2``, SliceLocation its distance along the slice normal,
SpacingBetweenSlices = the distance between slices along the normal, and SliceThickness the same unless
``meta["slice_thickness"]`` says otherwise (a simulation's thickness, the source series' own) for slices
along array axis 2 (``meta["slice_axis"]`` absent or 2).

Header: with ``meta["dicom_template"]`` (a file of the source series) every public tag of the
template is kept (patient, study, equipment, frame of reference, acquisition parameters, window)
except per-image, pixel-description, overlay, icon and private tags; the series gets new
SeriesInstanceUID / SOPInstanceUIDs, ImageType ``DERIVED\\SECONDARY``, SeriesNumber + 1000 and the
description suffix. Without a template a minimal Secondary Capture series is made: generated
study/series/frame-of-reference UIDs, PatientName ``MEDSR^DERIVED``, PatientID ``MEDSR-<8 digits of the
study UID>``, Modality from ``meta["modality"]`` or ``OT``.

Pixels (classic DICOM stores integers only): ``dtype="input"`` stores the source's integer type
(``meta["original_dtype"]``), keeping the source's RescaleSlope/Intercept when the values fit, else
slope 1 with an integer intercept that shifts the range into the type, else a computed slope.
``dtype="float32"`` (or a float source) stores 16-bit integers (int16 if any value is negative, else
uint16) spanning the full 65535 steps of the data range: slope = (max - min) / 65535, so values are
kept to 1.5e-5 of the range.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pydicom.valuerep import DSfloat

from medsr import __version__
from medsr.errors import MedsrError
from medsr.geometry import LPS_TO_RAS
from medsr.io.volume import affine_of, slice_fact

_INTEGER_TYPES = ("int8", "uint8", "int16", "uint16")
#: Group 0028 tags kept from the template: PhotometricInterpretation (read, then reset) and the display
#: settings in output units (window, RescaleType); the rest of the pixel description is rewritten.
_KEPT_PIXEL_TAGS = {0x00280004, 0x00281050, 0x00281051, 0x00281054, 0x00281055}
_DROPPED = (
    "SOPInstanceUID", "InstanceNumber", "SliceLocation", "ImagePositionPatient", "ImageOrientationPatient",
    "ImagesInAcquisition", "ReferencedImageSequence", "SourceImageSequence", "IconImageSequence",
    "StackID", "InStackPositionNumber", "DataSetTrailingPadding", "ImageComments",
)  # fmt: skip


def write_dicom_series(
    volume: MetaTensor, folder: Path, *, dtype: str = "input", description_suffix: str = " medsr"
) -> None:
    """Write ``volume`` (1, X, Y, Z) or (X, Y, Z) into the empty folder ``folder`` as a derived series.

    Args:
        volume: MetaTensor with a RAS affine (mm); optional meta ``dicom_template``, ``original_dtype``,
            ``rescale``, ``modality``, ``filename_or_obj``.
        folder: existing empty directory (the caller handles temporary names and overwriting).
        dtype: ``input`` (the source's stored integer type) or ``float32`` (16-bit with a fine slope).
        description_suffix: appended to the template's SeriesDescription.
    """
    folder = Path(folder)
    if not folder.is_dir() or any(folder.iterdir()):
        raise MedsrError(f"{folder}: a DICOM series is written into an existing, empty folder")
    data = _spatial(volume, folder)
    meta = dict(volume.meta)
    row_cos, col_cos, pixel_spacing, positions, step = _plane_geometry(affine_of(volume), data.shape, folder)
    normal = np.cross(row_cos, col_cos)
    gap = abs(float(np.dot(step, normal)))
    stype, slope, intercept = _storage(data, meta, dtype)
    stored = _quantize(data, stype, slope, intercept)

    ds = _header(meta, description_suffix, folder)
    ds.ImageOrientationPatient = _ds([*row_cos, *col_cos])
    ds.PixelSpacing = _ds(pixel_spacing)
    ds.SpacingBetweenSlices = _ds([gap])[0]
    ds.SliceThickness = _ds([_thickness(meta) or gap])[0]
    ds.Rows, ds.Columns = data.shape[1], data.shape[0]
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = ds.BitsStored = stype.itemsize * 8
    ds.HighBit = stype.itemsize * 8 - 1
    ds.PixelRepresentation = int(stype.kind == "i")
    ds.RescaleSlope, ds.RescaleIntercept = _ds([slope, intercept])
    for k in range(data.shape[2]):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds(positions[k])
        ds.SliceLocation = _ds([float(np.dot(positions[k], normal))])[0]
        pixels = np.ascontiguousarray(stored[:, :, k].T).astype(stype.newbyteorder("<")).tobytes()
        ds.add_new(0x7FE00010, "OW" if stype.itemsize > 1 else "OB", pixels)
        pydicom.dcmwrite(folder / f"IM_{k + 1:04d}.dcm", ds, enforce_file_format=True)


def _spatial(volume: torch.Tensor, folder: Path) -> np.ndarray:
    arr = np.asarray(
        torch.as_tensor(volume).detach().cpu().as_subclass(torch.Tensor).numpy(), dtype=np.float64
    )
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise MedsrError(f"{folder}: a DICOM series holds one 3-D volume, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise MedsrError(f"{folder}: refusing to write a volume with NaN or infinite voxels")
    return arr


def _plane_geometry(
    affine: np.ndarray, shape: tuple[int, ...], folder: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row/column cosines (LPS), PixelSpacing (row, column) mm, IPP of every slice (Z, 3), slice step (3,)."""
    lps = LPS_TO_RAS @ affine  # the matrix is its own inverse
    col_step, row_step = lps[:3, 0], lps[:3, 1]  # along a row (next column), along a column (next row)
    sizes = np.array([np.linalg.norm(row_step), np.linalg.norm(col_step)])
    row_cos, col_cos = col_step / sizes[1], row_step / sizes[0]
    if abs(float(np.dot(row_cos, col_cos))) > 1e-4:
        raise MedsrError(
            f"{folder}: the volume's first two axes are not perpendicular (sheared affine); DICOM slices "
            "cannot store that: write NIfTI instead"
        )
    positions = lps[:3, 3][None, :] + np.arange(shape[2])[:, None] * lps[:3, 2][None, :]
    return row_cos, col_cos, sizes, positions, lps[:3, 2]


def _storage(data: np.ndarray, meta: dict[str, Any], dtype: str) -> tuple[np.dtype, float, float]:
    """Stored integer type and (slope, intercept) so that ``stored * slope + intercept`` ~ ``data``."""
    if dtype not in ("input", "float32"):
        raise MedsrError(f"--dtype {dtype!r} is not one of float32, input")
    lo, hi = float(data.min()), float(data.max())
    name = str(meta.get("original_dtype") or "float32") if dtype == "input" else "float32"
    if name in _INTEGER_TYPES:
        stype = np.dtype(name)
        candidates = [tuple(meta["rescale"])] if meta.get("rescale") else []
        candidates += [(1.0, 0.0), (1.0, float(np.floor(lo)) - float(np.iinfo(stype).min))]
        for slope, intercept in candidates:
            slope, intercept = (float(v) for v in _ds([slope, intercept]))
            if slope > 0 and _fits(lo, hi, stype, slope, intercept):
                return stype, slope, intercept
    else:
        stype = np.dtype(np.int16 if lo < 0 else np.uint16)
    info = np.iinfo(stype)
    slope = (hi - lo) / (float(info.max) - float(info.min)) if hi > lo else 1.0
    slope, intercept = (float(v) for v in _ds([slope, lo - float(info.min) * slope]))
    return stype, slope, intercept


def _fits(lo: float, hi: float, stype: np.dtype, slope: float, intercept: float) -> bool:
    info = np.iinfo(stype)
    return np.rint((lo - intercept) / slope) >= info.min and np.rint((hi - intercept) / slope) <= info.max


def _quantize(data: np.ndarray, stype: np.dtype, slope: float, intercept: float) -> np.ndarray:
    info = np.iinfo(stype)
    return np.clip(np.rint((data - intercept) / slope), info.min, info.max).astype(stype)


def _header(meta: dict[str, Any], suffix: str, folder: Path) -> Dataset:
    """Patient/study/series header of the derived series (no per-slice or pixel tags yet)."""
    template = meta.get("dicom_template")
    if template:
        try:
            src = pydicom.dcmread(str(template), stop_before_pixels=True)
        except (OSError, InvalidDicomError) as err:
            raise MedsrError(f"{template}: cannot read the DICOM template of {folder.name}: {err}") from err
        ds = _from_template(src)
        description = str(src.get("SeriesDescription", "")).strip()
    else:
        ds = _fresh(meta)
        source = meta.get("filename_or_obj")
        description = Path(str(source)).name if source else "medsr"
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = (description + suffix)[:64]
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = date
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = time
    ds.DerivationDescription = f"medsr {__version__}"
    photometric = str(ds.get("PhotometricInterpretation", ""))
    ds.PhotometricInterpretation = photometric if photometric == "MONOCHROME1" else "MONOCHROME2"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _from_template(src: Dataset) -> Dataset:
    src.remove_private_tags()
    for tag in [e.tag for e in src if _dropped_group(e.tag)]:
        del src[tag]
    for keyword in _DROPPED:
        if keyword in src:
            delattr(src, keyword)
    image_type = list(src.get("ImageType", []))
    src.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    series_number = src.get("SeriesNumber")
    src.SeriesNumber = int(series_number) + 1000 if series_number not in (None, "") else 1000
    return src


def _dropped_group(tag: BaseTag) -> bool:
    """Pixel description, curves, overlays and pixel data: stale in a derived series."""
    if tag.group == 0x0028:
        return int(tag) not in _KEPT_PIXEL_TAGS
    return 0x5000 <= tag.group <= 0x60FF or tag.group == 0x7FE0


def _fresh(meta: dict[str, Any]) -> Dataset:
    ds = Dataset()
    study = generate_uid()
    today = _dt.date.today().strftime("%Y%m%d")
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = str(meta.get("modality") or "OT")
    ds.ConversionType = "WSD"
    ds.PatientName = "MEDSR^DERIVED"
    ds.PatientID = "MEDSR-" + study.replace(".", "")[-8:]
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyInstanceUID = study
    ds.StudyDate, ds.StudyTime = today, "000000"
    ds.StudyID = "1"
    ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.SeriesNumber = 1000
    ds.ImageType = ["DERIVED", "SECONDARY"]
    return ds


def _ds(values: Any) -> list[DSfloat]:
    """Decimal strings (16 characters at most) whose float value is what gets written."""
    return [DSfloat(float(v) + 0.0, auto_format=True) for v in np.ravel(values)]


def _thickness(meta: dict) -> float | None:
    """The slice thickness in mm the metadata records for slices along array axis 2, else None."""
    value = slice_fact(meta, 2, "slice_thickness")
    if not value:
        return None
    value = float(value)
    return value if np.isfinite(value) and value > 0 else None
