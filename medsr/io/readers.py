"""Read NIfTI, DICOM series and NRRD/MHA/MHD volumes into RAS MetaTensors.

``load_volume(path) -> MetaTensor`` of shape (1, X, Y, Z), float32, with ``meta["affine"]`` mapping voxel
indices to RAS+ world mm (see medsr.io.volume for the meta keys).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError, MedsrWarning
from medsr.io.formats import volume_format
from medsr.io.preflight import check_itk_data, check_nifti_data, check_size
from medsr.io.slice_facts import read_slice_facts
from medsr.io.volume import make_volume

#: NIfTI sform and qform placing a corner of the volume further apart than this (mm) disagree.
FORM_DISAGREEMENT_MM = 0.1
#: Affine axes whose |cos(angle)| exceeds this are sheared (not perpendicular; 1e-3 ~ 0.06 degrees).
SHEAR_COS = 1e-3


def load_volume(
    path: str | Path | Sequence[str | Path],
    *,
    series: str | None = None,
    volume_index: int | None = None,
) -> MetaTensor:
    """Read one 3-D volume as a (1, X, Y, Z) float32 MetaTensor with a RAS affine.

    Args:
        path: NIfTI/NRRD/MHA file, a DICOM series folder, or a list of DICOM files. A JSON sidecar
            beside a file or folder (``scan.json``) can supply the slice thickness and profile
            (:mod:`medsr.io.slice_facts`); it takes precedence over a DICOM SliceThickness.
        series: SeriesInstanceUID to pick when a DICOM folder holds several series.
        volume_index: which volume of a 4-D input to take (0-based); 4-D input without it is an error.
    """
    if not isinstance(path, (str, Path)):
        files = [Path(p) for p in path]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise MedsrError(f"DICOM file(s) not found: {', '.join(missing[:5])}")
        from medsr.io.dicom import read_dicom_series

        return read_dicom_series(files, series_uid=series)
    path = Path(path)
    if not path.exists():
        raise MedsrError(f"{path}: no such file or folder; check the path")
    if not (path.is_file() or path.is_dir()):
        raise MedsrError(
            f"{path}: not a regular file or folder (a pipe, socket or device); medsr reads volume files "
            "and DICOM series folders"
        )
    fmt = volume_format(path)
    if fmt == "dicom":
        from medsr.io.dicom import read_dicom_series

        volume = read_dicom_series(path if path.is_dir() else [path], series_uid=series)
    elif fmt == "nifti":
        volume = _read_nifti(path, volume_index)
    else:
        volume = _read_itk(path, fmt, volume_index)
    volume.meta.update(read_slice_facts(path, volume.shape[1:]))  # a sidecar beats the header
    return volume


def _pick_volume(data: np.ndarray, path: Path, volume_index: int | None) -> np.ndarray:
    """Reduce (X, Y, Z[, T...]) data to (X, Y, Z); 2-D and ambiguous 4-D input are errors."""
    while data.ndim > 3 and data.shape[-1] == 1 and volume_index in (None, 0):
        data = data[..., 0]
    if data.ndim < 3:
        raise MedsrError(
            f"{path} is {data.ndim}-D {tuple(data.shape)}; medsr upscales 3-D volumes (a stack of slices)"
        )
    if data.ndim == 4:
        n = data.shape[3]
        if volume_index is None:
            raise MedsrError(
                f"{path} is 4-D {tuple(data.shape)}; medsr upscales 3-D volumes: pass one volume with "
                f"--volume-index (0..{n - 1})"
            )
        if not 0 <= volume_index < n:
            raise MedsrError(f"{path}: --volume-index {volume_index} is out of range 0..{n - 1}")
        return data[..., volume_index]
    if data.ndim > 4:
        raise MedsrError(f"{path} is {data.ndim}-D {tuple(data.shape)}; medsr reads 3-D or 4-D volumes")
    if volume_index not in (None, 0):
        raise MedsrError(f"{path} is 3-D {tuple(data.shape)}; --volume-index {volume_index} does not apply")
    return data


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Divert file descriptor 2 (where C++ libraries print) to a temporary file for the duration.

    Yields a list that holds the diverted lines once the block ends (for an error message).
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor at all
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read(1 << 16).decode(errors="replace").splitlines())


def _read_nifti(path: Path, volume_index: int | None) -> MetaTensor:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for corrupt files
        raise MedsrError(f"{path}: not a readable NIfTI file ({err}); check the file is complete") from None
    check_size(path, img.shape)
    hdr = img.header
    stored = np.dtype(img.get_data_dtype())
    if stored.kind == "c":
        raise MedsrError(
            f"{path} holds complex voxels ({stored.name}); medsr upscales real-valued images: save the "
            "magnitude image and pass that"
        )
    if stored.kind not in "biuf":
        raise MedsrError(
            f"{path} holds {stored} voxels (e.g. RGB colour); medsr upscales single-channel grey-level images"
        )
    offset = getattr(img.dataobj, "offset", None)
    if offset is not None:
        check_nifti_data(path, img.shape, stored, int(offset), int(getattr(hdr, "sizeof_hdr", 0)))
    affine = _nifti_affine(img, path)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:
        raise MedsrError(f"{path}: voxel data cannot be read ({err}); the file may be truncated") from None
    data = _pick_volume(data, path, volume_index)
    codes = (int(hdr["sform_code"]), int(hdr["qform_code"]))
    return make_volume(
        data,
        affine,
        format="nifti",
        filename_or_obj=str(path),
        original_dtype=np.dtype(img.get_data_dtype()).name,
        nifti_codes=codes,
    )


def _read_itk(path: Path, fmt: str, volume_index: int | None) -> MetaTensor:
    import SimpleITK as sitk

    try:
        with native_stderr_captured() as printed:  # ITK's MetaIO prints on fd 2: keep the CLI to one line
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            check_size(path, reader.GetSize())
            if reader.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
                raise MedsrError(f"{path} holds complex voxels; medsr upscales real-valued images")
            probe = sitk.Image([1, 1], reader.GetPixelID(), reader.GetNumberOfComponents())
            pixel_bytes = probe.GetSizeOfPixelComponent() * probe.GetNumberOfComponentsPerPixel()
            check_itk_data(path, fmt, reader.GetSize(), pixel_bytes)
            image = reader.Execute()
    except RuntimeError as err:
        said = [line for line in printed if line] or str(err).strip().splitlines()[-1:] or ["unknown error"]
        raise MedsrError(f"{path}: not a readable {fmt.upper()} file ({said[0]})") from None
    dim = image.GetDimension()
    if dim < 3:
        raise MedsrError(f"{path} is {dim}-D {image.GetSize()}; medsr upscales 3-D volumes")
    data = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C]) or (T, Z, Y, X)
    if dim == 4:
        data = np.moveaxis(data, 0, -1)  # (Z, Y, X, T)
        image3 = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    else:
        image3 = image  # a vector image gives (Z, Y, X, C): its components act as the 4th axis
    data = np.swapaxes(data, 0, 2) if data.ndim == 3 else np.transpose(data, (2, 1, 0, 3))
    data = _pick_volume(np.asarray(data, dtype=np.float32), path, volume_index)
    direction = np.asarray(image3.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image3.GetSpacing(), dtype=np.float64)[None, :]
    lps[:3, 3] = image3.GetOrigin()
    return make_volume(
        data,
        geometry.LPS_TO_RAS @ lps,
        format=fmt,
        filename_or_obj=str(path),
        original_dtype=np.dtype(sitk.GetArrayViewFromImage(image).dtype).name,
    )


def _nifti_affine(img, path: Path) -> np.ndarray:
    """The voxel-to-RAS affine nibabel chooses (sform if its code > 0, else qform, else pixdim), checked.

    A singular or non-finite affine is refused; a sheared one is kept and warned about (the qform cannot
    hold a shear); sform and qform that disagree, or no orientation at all, are warned about.
    """
    hdr = img.header
    sform_code, qform_code = int(hdr["sform_code"]), int(hdr["qform_code"])
    which = "sform" if sform_code > 0 else "qform" if qform_code > 0 else "pixdim (no sform or qform)"
    affine = np.asarray(img.affine, dtype=np.float64)
    cols = affine[:3, :3]
    sizes = np.linalg.norm(cols, axis=0)
    finite = bool(np.isfinite(affine).all())
    if not finite or sizes.min() == 0 or abs(np.linalg.det(cols)) < 1e-6 * float(np.prod(sizes)):
        raise MedsrError(
            f"{path}: the {which} affine is {'not finite' if not finite else 'singular'} "
            f"({np.round(affine[:3], 4).tolist()}), so voxel positions are unknown; fix the header geometry"
        )
    shape = img.shape[:3]
    cosines = np.abs(np.triu((cols / sizes).T @ (cols / sizes), 1))
    if cosines.max() > SHEAR_COS:
        angle = float(np.degrees(np.arcsin(min(1.0, cosines.max()))))
        differ = ""
        if sform_code > 0 and qform_code > 0:
            gap = _corner_gap(shape, affine, hdr.get_qform())
            differ = f" (here up to {gap:.3g} mm)"
        warnings.warn(
            f"{path}: the {which} affine is sheared (axes {angle:.2f} degrees from perpendicular, e.g. an "
            "uncorrected gantry tilt); medsr keeps it exactly, but a NIfTI qform cannot hold a shear, so tools "
            f"that read the qform (ITK, SimpleITK) place voxels differently{differ}",
            MedsrWarning,
            stacklevel=4,
        )
    elif sform_code > 0 and qform_code > 0:
        gap = _corner_gap(shape, affine, hdr.get_qform())
        if gap > FORM_DISAGREEMENT_MM:
            warnings.warn(
                f"{path}: the sform and qform disagree by up to {gap:.3g} mm; medsr uses the sform (as nibabel "
                "does) and writes it as both sform and qform of the output",
                MedsrWarning,
                stacklevel=4,
            )
    elif sform_code == 0 and qform_code == 0:
        warnings.warn(
            f"{path}: no sform or qform (both codes 0), so the orientation is unknown; medsr uses "
            "nibabel's fallback affine built from the pixdim voxel sizes",
            MedsrWarning,
            stacklevel=4,
        )
    return affine


def _corner_gap(shape: Sequence[int], a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance (mm) between where two affines put the corners of the voxel grid."""
    shape3 = tuple(int(n) for n in (*shape, 1, 1)[:3])
    gaps = geometry.extent_corners(shape3, a) - geometry.extent_corners(
        shape3, np.asarray(b, dtype=np.float64)
    )
    return float(np.linalg.norm(gaps, axis=1).max())
