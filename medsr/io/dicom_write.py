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
except per-image, pixel-description, overlay, icon, reference and private tags; the series gets new
SeriesInstanceUID / SOPInstanceUIDs, ImageType ``DERIVED\\SECONDARY``, SeriesNumber + 1000, the
description suffix, and references to its source slices and a derivation (:mod:`medsr.io.dicom_refs`).
Without a template a minimal Secondary Capture series is made: generated study/series/frame-of-reference
UIDs, PatientName ``MEDSR^DERIVED``, PatientID ``MEDSR-<8 digits of the study UID>``, Modality from
``meta["modality"]`` or ``OT``.

Pixels (classic DICOM stores integers): ``dtype="input"`` keeps the source's storage: its
BitsAllocated/BitsStored/PixelRepresentation (the template's; else ``meta["original_dtype"]``) and its
RescaleSlope/Intercept (``meta["rescale"]``; a slope spanning the data range when they vary by slice).
Values are rounded to the stored grid and clipped to the stored range, with a
:class:`~medsr.errors.MedsrWarning` saying how many voxels were clipped. ``dtype="float32"`` (or a float
source) stores 16-bit integers (int16 if any value is negative, else uint16) spanning the full 65535
steps of the data range: slope = (max - min) / 65535, so values are kept to 1.5e-5 of the range.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
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
from medsr.errors import MedsrError, MedsrWarning
from medsr.geometry import LPS_TO_RAS
from medsr.io.dicom_refs import add_derivation, add_references, nearest_sources
from medsr.io.volume import affine_of, slice_fact

_INTEGER_TYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32")
#: Group 0028 tags kept from the template: PhotometricInterpretation (read, then reset) and the display
#: settings in output units (window, RescaleType); the rest of the pixel description is rewritten.
_KEPT_PIXEL_TAGS = {0x00280004, 0x00281050, 0x00281051, 0x00281054, 0x00281055}
_DROPPED = (
    "SOPInstanceUID", "InstanceNumber", "SliceLocation", "ImagePositionPatient", "ImageOrientationPatient",
    "ImagesInAcquisition", "ReferencedImageSequence", "SourceImageSequence", "IconImageSequence",
    "StackID", "InStackPositionNumber", "DataSetTrailingPadding", "ImageComments",
    "ReferencedSeriesSequence", "StudiesContainingOtherReferencedInstancesSequence", "ReferencedInstanceSequence",
    "SourceInstanceSequence", "DerivationCodeSequence", "DerivationDescription", "InstanceCreatorUID",
)  # fmt: skip


@dataclass(frozen=True)
class _Storage:
    """Stored pixels: ``value = stored * slope + intercept``, ``stored`` a ``bits``-bit integer in ``dtype``."""

    dtype: np.dtype
    bits: int
    slope: float
    intercept: float
    rescale_tags: bool = True  # False: the source had no RescaleSlope/Intercept and none is needed

    @property
    def low(self) -> int:
        return -(1 << (self.bits - 1)) if self.dtype.kind == "i" else 0

    @property
    def high(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.dtype.kind == "i" else (1 << self.bits) - 1


def write_dicom_series(
    volume: MetaTensor, folder: Path, *, dtype: str = "input", description_suffix: str = " medsr"
) -> None:
    """Write ``volume`` (1, X, Y, Z) or (X, Y, Z) into the empty folder ``folder`` as a derived series.

    Args:
        volume: MetaTensor with a RAS affine (mm); optional meta ``dicom_template``, ``original_dtype``,
            ``rescale``, ``dicom_sources``, ``dicom_series_uid``, ``modality``, ``filename_or_obj``,
            ``medsr`` / ``simulation`` (what was done, for DerivationDescription).
        folder: existing empty directory (the caller handles temporary names and overwriting).
        dtype: ``input`` (the source's stored integers) or ``float32`` (16-bit with a fine slope).
        description_suffix: appended to the template's SeriesDescription.

    Warns:
        MedsrWarning: ``input`` storage clipped voxels outside the source's stored range.
    """
    folder = Path(folder)
    if not folder.is_dir() or any(folder.iterdir()):
        raise MedsrError(f"{folder}: a DICOM series is written into an existing, empty folder")
    data = _spatial(volume, folder)
    meta = dict(volume.meta)
    row_cos, col_cos, pixel_spacing, positions, step = _plane_geometry(affine_of(volume), data.shape, folder)
    normal = np.cross(row_cos, col_cos)
    gap = abs(float(np.dot(step, normal)))
    template = _read_template(meta, folder)
    storage = _storage(data, meta, dtype, template)
    stored = _quantize(data, storage, str(meta.get("filename_or_obj") or folder))
    centres = positions + row_cos * pixel_spacing[1] * (data.shape[0] - 1) / 2
    centres += col_cos * pixel_spacing[0] * (data.shape[1] - 1) / 2
    sources, source_series = meta.get("dicom_sources"), _source_series(meta, template)
    refs = nearest_sources(sources, centres) if template is not None and sources and source_series else None

    ds = _header(meta, template, description_suffix)
    ds.ImageOrientationPatient = _ds([*row_cos, *col_cos])
    ds.PixelSpacing = _ds(pixel_spacing)
    ds.SpacingBetweenSlices = _ds([gap])[0]
    ds.SliceThickness = _ds([_thickness(meta) or gap])[0]
    ds.Rows, ds.Columns = data.shape[1], data.shape[0]
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = storage.dtype.itemsize * 8
    ds.BitsStored = storage.bits
    ds.HighBit = storage.bits - 1
    ds.PixelRepresentation = int(storage.dtype.kind == "i")
    if storage.rescale_tags:
        ds.RescaleSlope, ds.RescaleIntercept = _ds([storage.slope, storage.intercept])
    if template is None:  # Secondary Capture: its General Image and Modality LUT modules ask for these
        ds.PatientOrientation = [_letters(row_cos), _letters(col_cos)]
        ds.RescaleType = "US"  # unspecified units
    for k in range(data.shape[2]):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds(positions[k])
        ds.SliceLocation = _ds([float(np.dot(positions[k], normal))])[0]
        if refs is not None:
            add_references(ds, sources, refs[k], source_series)
        pixels = np.ascontiguousarray(stored[:, :, k].T).astype(storage.dtype.newbyteorder("<")).tobytes()
        ds.add_new(0x7FE00010, "OW" if storage.dtype.itemsize > 1 else "OB", pixels)
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


def _read_template(meta: dict[str, Any], folder: Path) -> Dataset | None:
    """The header of ``meta["dicom_template"]`` (a source file), or None without one."""
    template = meta.get("dicom_template")
    if not template:
        return None
    try:
        return pydicom.dcmread(str(template), stop_before_pixels=True)
    except (OSError, InvalidDicomError) as err:
        raise MedsrError(f"{template}: cannot read the DICOM template of {folder.name}: {err}") from err


def _source_series(meta: dict[str, Any], template: Dataset | None) -> str:
    uid = meta.get("dicom_series_uid") or (template.get("SeriesInstanceUID") if template is not None else "")
    return str(uid or "")


def _storage(data: np.ndarray, meta: dict[str, Any], dtype: str, template: Dataset | None) -> _Storage:
    """How to store ``data``: the source's integers and rescale (``input``), else 16 bits spanning the range."""
    if dtype not in ("input", "float32"):
        raise MedsrError(f"--dtype {dtype!r} is not one of float32, input")
    lo, hi = float(data.min()), float(data.max())
    source = _source_container(meta, template) if dtype == "input" else None
    if source is None:
        return _spanning(lo, hi, np.dtype(np.int16 if lo < 0 else np.uint16), 16)
    stype, bits = source
    rescale = meta.get("rescale")
    if not rescale and meta.get("format") == "dicom":  # RescaleSlope/Intercept vary by slice
        return _spanning(lo, hi, stype, bits)
    slope, intercept = (float(v) for v in _ds(rescale or (1.0, 0.0)))
    if slope <= 0:
        return _spanning(lo, hi, stype, bits)
    tags = (slope, intercept) != (1.0, 0.0) or template is None or "RescaleSlope" in template
    return _Storage(stype, bits, slope, intercept, tags)


def _source_container(meta: dict[str, Any], template: Dataset | None) -> tuple[np.dtype, int] | None:
    """(container dtype, BitsStored) of an integer source: the template's pixel description, else
    ``meta["original_dtype"]`` at full width; None for a float source."""
    name = str(meta.get("original_dtype") or "")
    if name not in _INTEGER_TYPES:
        return None
    if template is not None and all(
        t in template for t in ("BitsAllocated", "BitsStored", "PixelRepresentation")
    ):
        allocated, bits = int(template.BitsAllocated), int(template.BitsStored)
        if allocated in (8, 16, 32) and 0 < bits <= allocated:
            return np.dtype(f"{'' if int(template.PixelRepresentation) else 'u'}int{allocated}"), bits
    stype = np.dtype(name)
    return stype, stype.itemsize * 8


def _spanning(lo: float, hi: float, stype: np.dtype, bits: int) -> _Storage:
    """Integers spanning [lo, hi] with every step of the stored range (slope = range / steps)."""
    base = _Storage(stype, bits, 1.0, 0.0)
    slope = (hi - lo) / float(base.high - base.low) if hi > lo else 1.0
    slope, intercept = (float(v) for v in _ds([slope, lo - float(base.low) * slope]))
    return _Storage(stype, bits, slope, intercept)


def _quantize(data: np.ndarray, storage: _Storage, name: str) -> np.ndarray:
    """``data`` rounded to stored integers, clipped to the stored range (warning how many were clipped)."""
    q = np.rint((data - storage.intercept) / storage.slope)
    below, above = int(np.count_nonzero(q < storage.low)), int(np.count_nonzero(q > storage.high))
    if below or above:
        lo, hi = (
            storage.low * storage.slope + storage.intercept,
            storage.high * storage.slope + storage.intercept,
        )
        warnings.warn(
            f"{name}: {below + above} of {q.size} voxels of the derived DICOM series lie outside the source's "
            f"stored range {storage.low}..{storage.high} (BitsStored {storage.bits}, "
            f"{'signed' if storage.dtype.kind == 'i' else 'unsigned'}; {lo:g}..{hi:g} after RescaleSlope "
            f"{storage.slope:g}, RescaleIntercept {storage.intercept:g}) and were clipped to it ({below} below, "
            f"{above} above); pass --dtype float32 to keep them",
            MedsrWarning,
            stacklevel=3,
        )
    return np.clip(q, storage.low, storage.high, out=q).astype(storage.dtype)


def _header(meta: dict[str, Any], template: Dataset | None, suffix: str) -> Dataset:
    """Patient/study/series header of the derived series (no per-slice or pixel tags yet)."""
    if template is not None:
        description = str(template.get("SeriesDescription", "")).strip()
        ds = _from_template(template)
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
    add_derivation(ds, meta, __version__)
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
    ds.Laterality = ""
    return ds


def _letters(direction: np.ndarray) -> str:
    """PatientOrientation letters of an LPS unit vector, strongest component first (PS3.3 C.7.6.1.1.1)."""
    names = ("LR", "PA", "HF")
    order = np.argsort(-np.abs(direction), kind="stable")
    return "".join(names[i][int(direction[i] < 0)] for i in order if abs(direction[i]) > 1e-4)


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
