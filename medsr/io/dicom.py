"""Read a classic DICOM image series (one file per slice) into a RAS MetaTensor.

``read_dicom_series(folder_or_files)`` groups files by SeriesInstanceUID, sorts the slices by their
position along the slice normal (``cross(row_cosine, column_cosine) . ImagePositionPatient``, never by
InstanceNumber), checks that they form one evenly spaced 3-D grid and applies RescaleSlope/Intercept.

Array axes are (X, Y, Z) = (columns, rows, slices in sorted order): voxel (i, j, k) is
``pixel_array[j, i]`` of sorted slice k. The LPS affine has columns ``row_cosine * PixelSpacing[1]``,
``column_cosine * PixelSpacing[0]`` and ``(IPP_last - IPP_first) / (n - 1)``, origin ``IPP_first``; it is
turned to RAS by negating the x and y rows, as MONAI's ``ITKReader(affine_lps_to_ras=True)`` does.

Writing a derived series lives in :mod:`medsr.io.dicom_write` and is re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from monai.data import MetaTensor
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medsr.errors import MedsrError
from medsr.geometry import LPS_TO_RAS
from medsr.io.dicom_refs import record_sources
from medsr.io.dicom_write import write_dicom_series
from medsr.io.formats import DATASET_STARTS
from medsr.io.preflight import check_size
from medsr.io.volume import make_volume

__all__ = ["read_dicom_series", "write_dicom_series"]

#: Slice gaps may differ from the median gap by this many mm plus this fraction of it.
SPACING_ATOL_MM = 0.01
SPACING_RTOL = 0.01
#: Slices closer than this along the normal (mm) share a position.
DUPLICATE_TOL_MM = 1e-3
#: Tolerance on direction cosines (IOP) and on PixelSpacing (mm) when comparing slices.
ORIENTATION_TOL = 1e-4
PIXEL_SPACING_TOL_MM = 1e-4

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class _Slice:
    path: Path
    header: Dataset
    forced: bool = False  # no preamble: read with force=True


def read_dicom_series(source: Path | Sequence[Path], series_uid: str | None = None) -> MetaTensor:
    """Read one DICOM series as a (1, X, Y, Z) float32 MetaTensor with a RAS affine (mm).

    Args:
        source: a folder (searched recursively; non-DICOM files and DICOMDIR are skipped) or a list of
            DICOM files.
        series_uid: SeriesInstanceUID to read when the files hold several image series.

    Raises:
        MedsrError: no or several series, non-image objects, missing/mixed geometry tags, duplicate or
            unevenly spaced slice positions, multi-frame files, or pixel data without a decoder.
    """
    label, slices = _collect(source)
    try:
        return _read_series(label, slices, series_uid)
    except MedsrError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        NotImplementedError,
        OverflowError,
    ) as err:
        raise MedsrError(
            f"{label}: unreadable DICOM values ({type(err).__name__}: {' '.join(str(err).split())[:200]}); a "
            "file of the series is damaged"
        ) from None


def _read_series(label: str, slices: list[_Slice], series_uid: str | None) -> MetaTensor:
    series = _pick_series(label, slices, series_uid)
    uid = str(series[0].header.get("SeriesInstanceUID", ""))
    for s in series:
        _check_image(s)
    rows, cols, spacing, iop = _common_plane(label, series)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    series.sort(key=lambda s: float(np.dot(_ipp(s), normal)))
    ipp = np.array([_ipp(s) for s in series])
    step = _slice_step(label, series, ipp, normal)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * spacing[1]
    lps[:3, 1] = col_cos * spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = ipp[0]
    check_size(Path(label), (cols, rows, len(series)))  # before allocating (X, Y, Z) float32
    array, stored_dtype, rescale = _pixels(series, rows, cols)
    first = series[0].header
    meta = {
        "format": "dicom",
        "filename_or_obj": label,
        "original_dtype": stored_dtype,
        "modality": str(first.get("Modality", "")) or None,
        "dicom_template": str(series[0].path),
        "dicom_series_uid": uid,
        "rescale": rescale,
        "dicom_sources": record_sources([s.header for s in series], ipp @ normal, normal),
    }
    if first.get("SliceThickness") not in (None, ""):
        meta["slice_thickness"] = float(first.SliceThickness)
    return make_volume(array, LPS_TO_RAS @ lps, **meta)


def _collect(source: Path | Sequence[Path]) -> tuple[str, list[_Slice]]:
    """Headers of the DICOM files in ``source``; a folder skips non-DICOM files silently."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            return _collect([folder])
        slices = [s for p in sorted(folder.rglob("*")) if p.is_file() and (s := _read_header(p)) is not None]
        if not slices:
            raise MedsrError(f"{folder}: no DICOM image files found in this folder or below")
        return str(folder), slices
    paths = [Path(p) for p in source]
    if not paths:
        raise MedsrError("no DICOM files given: pass a series folder or a list of .dcm files")
    slices = []
    for p in paths:
        if not p.is_file():
            raise MedsrError(f"{p}: no such DICOM file; check the path")
        s = _read_header(p)
        if s is None:
            raise MedsrError(f"{p}: not a DICOM image file (or a DICOMDIR); pass only the series' files")
        slices.append(s)
    label = str(paths[0]) if len(paths) == 1 else os.path.commonpath([str(p.parent) for p in paths])
    return label, slices


def _read_header(path: Path) -> _Slice | None:
    """The header of a DICOM file (no pixels), or None for non-DICOM files and DICOMDIRs."""
    forced = False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        _decode_all(ds)
    except InvalidDicomError:  # no 'DICM' preamble: an old file without it, or not DICOM at all
        ds, forced = _read_without_preamble(path), True
    except Exception as err:  # a Part 10 file pydicom cannot parse: damaged, never skipped silently
        raise MedsrError(
            f"{path}: damaged DICOM file ({type(err).__name__}: {' '.join(str(err).split())[:200]}); copy it "
            "again or remove it from the series"
        ) from None
    if ds is None or _sop_class(ds) == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return None
    if not forced and not ("SeriesInstanceUID" in ds and "SOPInstanceUID" in ds):
        raise MedsrError(
            f"{path}: DICOM file without SeriesInstanceUID or SOPInstanceUID: it is truncated or damaged; "
            "copy it again or remove it from the series"
        )
    return _Slice(path, ds, forced)


def _read_without_preamble(path: Path) -> Dataset | None:
    """Old files without the 128-byte preamble: accept them only if they start like a dataset."""
    try:
        with open(path, "rb") as f:
            if f.read(2) not in DATASET_STARTS:
                return None
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        _decode_all(ds)
    except Exception:  # anything unparsable is simply not DICOM
        return None
    return ds if "SOPInstanceUID" in ds and "SeriesInstanceUID" in ds else None


def _decode_all(ds: Dataset) -> None:
    """Convert every top-level element now (pydicom converts lazily), so damage shows up here, per file."""
    for _ in getattr(ds, "file_meta", None) or ():
        pass
    for _ in ds:
        pass


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return str(uid or "")


def _is_image(s: _Slice) -> bool:
    return "Rows" in s.header and "Columns" in s.header


def _pick_series(label: str, slices: list[_Slice], series_uid: str | None) -> list[_Slice]:
    groups: dict[str, list[_Slice]] = {}
    for s in slices:
        groups.setdefault(str(s.header.get("SeriesInstanceUID", "")), []).append(s)
    if series_uid is not None:
        uid = series_uid.strip()
        if uid not in groups:
            raise MedsrError(
                f"{label}: no series with SeriesInstanceUID {uid}; available:\n{_listing(groups)}"
            )
        return list(groups[uid])
    if len(groups) == 1:
        return list(next(iter(groups.values())))
    images = {uid: g for uid, g in groups.items() if any(_is_image(s) for s in g)}
    if len(images) == 1:  # e.g. a CT series next to its RTSTRUCT or SR: the images are meant
        return list(next(iter(images.values())))
    raise MedsrError(
        f"{label} holds {len(groups)} DICOM series; pass --series UID with one of:\n{_listing(groups)}"
    )


def _listing(groups: dict[str, list[_Slice]]) -> str:
    lines = []
    for uid, g in groups.items():
        h = g[0].header
        desc = str(h.get("SeriesDescription", "")).strip()
        n = len(g)
        lines.append(
            f"  {uid or '(no SeriesInstanceUID)'}  {h.get('Modality', '?')}  {desc!r}  {n} file{'s' * (n > 1)}"
        )
    return "\n".join(lines)


def _check_image(s: _Slice) -> None:
    h = s.header
    if not _is_image(s):
        kind = pydicom.uid.UID(_sop_class(h)).name if _sop_class(h) else "unknown SOP class"
        if "Image Storage" in kind:
            raise MedsrError(
                f"{s.path}: a {kind} object without Rows/Columns: the file is truncated or damaged; copy it "
                "again or remove it from the series"
            )
        raise MedsrError(
            f"{s.path}: not an image (Modality {h.get('Modality', '?')}, {kind}: no Rows/Columns/PixelData); "
            "pass the folder or files of an image series"
        )
    frames = int(h.get("NumberOfFrames", 1) or 1)
    kind = pydicom.uid.UID(_sop_class(h)).name if _sop_class(h) else "unknown SOP class"
    if frames > 1 or "PerFrameFunctionalGroupsSequence" in h or "SharedFunctionalGroupsSequence" in h:
        raise MedsrError(
            f"{s.path}: multi-frame DICOM ({kind}, {frames} frame{'s' * (frames != 1)}) is not supported yet; "
            "convert it to a classic one-file-per-slice series or to NIfTI (e.g. dcm2niix) first"
        )
    if int(h.get("SamplesPerPixel", 1) or 1) != 1:
        raise MedsrError(
            f"{s.path}: colour image ({h.SamplesPerPixel} samples per pixel); medsr reads grey images"
        )
    missing = [t for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if not h.get(t)]
    if missing:
        raise MedsrError(
            f"{s.path}: missing {', '.join(missing)}, so its place in the patient is unknown; medsr needs "
            "the image plane tags of a cross-sectional series (CT/MR/PET), not a projection or screenshot"
        )


def _ipp(s: _Slice) -> np.ndarray:
    return np.array([float(v) for v in s.header.ImagePositionPatient], dtype=np.float64)


def _common_plane(label: str, series: list[_Slice]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Rows, Columns, PixelSpacing (row, column) mm and the 6 IOP cosines shared by all slices."""
    ref = series[0]

    def plane(s: _Slice) -> tuple[int, int, np.ndarray, np.ndarray]:
        h = s.header
        iop = np.array([float(v) for v in h.ImageOrientationPatient], dtype=np.float64)
        return int(h.Rows), int(h.Columns), np.array([float(v) for v in h.PixelSpacing]), iop

    rows, cols, spacing, iop = plane(ref)
    if iop.shape != (6,) or spacing.shape != (2,):
        raise MedsrError(f"{ref.path}: ImageOrientationPatient needs 6 values and PixelSpacing 2")
    for s in series[1:]:
        r, c, sp, io = plane(s)
        if (r, c) != (rows, cols):
            raise MedsrError(
                f"{label}: slices differ in size: {ref.path.name} is {rows}x{cols} (Rows x Columns), "
                f"{s.path.name} is {r}x{c}; a series must be one grid (pass --series or only one volume's files)"
            )
        if not np.allclose(sp, spacing, atol=PIXEL_SPACING_TOL_MM, rtol=0):
            raise MedsrError(
                f"{label}: slices differ in PixelSpacing: {ref.path.name} has {list(spacing)} mm, "
                f"{s.path.name} has {list(sp)} mm"
            )
        if not np.allclose(io, iop, atol=ORIENTATION_TOL, rtol=0):
            raise MedsrError(
                f"{label}: slices have different orientations (ImageOrientationPatient {_fmt(iop)} in "
                f"{ref.path.name}, {_fmt(io)} in {s.path.name}), e.g. a localizer or radial series; "
                "medsr reads stacks of parallel slices"
            )
    row_cos, col_cos = iop[:3], iop[3:]
    norms = np.array([np.linalg.norm(row_cos), np.linalg.norm(col_cos)])
    if np.any(np.abs(norms - 1) > 1e-3) or abs(np.dot(row_cos, col_cos)) > 1e-3:
        raise MedsrError(
            f"{ref.path}: ImageOrientationPatient {_fmt(iop)} is not two orthogonal unit vectors"
        )
    return rows, cols, spacing, np.concatenate([row_cos / norms[0], col_cos / norms[1]])


def _slice_step(label: str, series: list[_Slice], ipp: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """LPS vector (mm) from one sorted slice to the next, after checking even spacing."""
    if len(series) == 1:
        h = series[0].header
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = h.get(tag)
            if value not in (None, "") and abs(float(value)) > 0:
                return normal * abs(float(value))
        raise MedsrError(
            f"{series[0].path}: a single slice without SpacingBetweenSlices or SliceThickness has no slice spacing"
        )
    pos = ipp @ normal
    gaps = np.diff(pos)
    names = [s.path.name for s in series]
    dup = np.flatnonzero(gaps < DUPLICATE_TOL_MM)
    if dup.size:
        k = int(dup[0])
        raise MedsrError(
            f"{label}: {dup.size} duplicate slice position(s), e.g. {names[k]} and {names[k + 1]} both at "
            f"{pos[k]:.3f} mm along the slice normal; the series holds several volumes (echoes, time points, "
            "acquisitions): pass only the files of one volume"
        )
    median = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - median) > SPACING_ATOL_MM + SPACING_RTOL * median)
    if bad.size:
        listed = "; ".join(
            f"{gaps[k]:.3f} mm between slice {k} ({names[k]}, at {pos[k]:.3f} mm) and slice {k + 1} "
            f"({names[k + 1]}, at {pos[k + 1]:.3f} mm)"
            for k in bad[:3]
        )
        more = f" and {bad.size - 3} more" if bad.size > 3 else ""
        raise MedsrError(
            f"{label}: non-uniform slice spacing: expected {median:.3f} mm (the median gap) but found "
            f"{listed}{more}. A slice is missing or a stray slice belongs to another volume; medsr needs "
            "evenly spaced slices (remove the stray files or resample the series first)"
        )
    step = (ipp[-1] - ipp[0]) / (len(series) - 1)
    drift = np.linalg.norm(np.diff(ipp, axis=0) - step, axis=1)
    worst = int(np.argmax(drift))
    if drift[worst] > SPACING_ATOL_MM + SPACING_RTOL * np.linalg.norm(step):
        raise MedsrError(
            f"{label}: slice positions do not lie on a straight line: {names[worst + 1]} is offset by "
            f"{drift[worst]:.3f} mm from the even step {_fmt(step)} mm (LPS); medsr needs one regular grid"
        )
    return step


def _pixels(series: list[_Slice], rows: int, cols: int) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """(X, Y, Z) float32 rescaled intensities, stored dtype name, and (slope, intercept) if uniform."""
    out = np.empty((cols, rows, len(series)), dtype=np.float32)
    stored = ""
    rescales = set()
    for k, s in enumerate(series):
        try:
            ds = pydicom.dcmread(s.path, force=s.forced)
        except Exception as err:  # it parsed a moment ago: changed or damaged since
            raise MedsrError(f"{s.path}: cannot be read again ({type(err).__name__}: {err})") from None
        if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise MedsrError(f"{s.path}: has no PixelData (not an image object); pass an image series")
        try:
            pixels = ds.pixel_array
        except (RuntimeError, NotImplementedError, ValueError, AttributeError) as err:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = ts.name if ts is not None else "unknown transfer syntax"
            no_decoder = any(w in str(err).lower() for w in ("plugin", "dependencies", "decoder"))
            compressed = ts is not None and ts.is_transfer_syntax and ts.is_compressed
            if not (compressed and no_decoder):
                raise MedsrError(
                    f"{s.path}: its {name} pixel data cannot be read ({err}); the file is truncated or "
                    "damaged (or its Rows/Columns/BitsAllocated are wrong): copy it again"
                ) from None
            raise MedsrError(
                f"{s.path}: cannot decode its {name} pixel data: {err}\nInstall a decoder named above, e.g. "
                "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` (JPEG, JPEG-LS, JPEG 2000) "
                "or `pip install python-gdcm`"
            ) from err
        if pixels.shape != (rows, cols):
            raise MedsrError(f"{s.path}: pixel data has shape {pixels.shape}, expected ({rows}, {cols})")
        stored = stored or pixels.dtype.name
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        rescales.add((slope, intercept))
        out[:, :, k] = (pixels.astype(np.float64) * slope + intercept).T
    rescale = next(iter(rescales)) if len(rescales) == 1 else None
    return out, stored, rescale


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
