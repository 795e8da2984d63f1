"""Read NIfTI, DICOM series and NRRD/MHA/MHD volumes into RAS MetaTensors.

``load_volume(path) -> MetaTensor`` of shape (1, X, Y, Z), float32, with ``meta["affine"]`` mapping voxel
indices to RAS+ world mm (see medsr.io.volume for the meta keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from medsr.errors import MedsrError
from medsr.io.volume import make_volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".ima")

#: Largest volume (voxels) medsr agrees to allocate; a header declaring more is refused before reading.
MAX_VOXELS = 2_000_000_000

#: LPS <-> RAS: negate the first two world axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def volume_format(path: Path) -> str:
    """``nifti``, ``nrrd``, ``mha``, ``mhd``, ``dicom`` from a path's suffix (a folder is a DICOM series)."""
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "nhdr" if name.endswith(".nhdr") else name.rsplit(".", 1)[-1]
    if name.endswith(DICOM_SUFFIXES) or "." not in name:
        return "dicom"
    raise MedsrError(
        f"{path}: unknown volume format {path.suffix!r}; medsr reads .nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd "
        "and DICOM series (a folder or .dcm files)"
    )


def load_volume(
    path: str | Path | Sequence[str | Path],
    *,
    series: str | None = None,
    volume_index: int | None = None,
) -> MetaTensor:
    """Read one 3-D volume as a (1, X, Y, Z) float32 MetaTensor with a RAS affine.

    Args:
        path: NIfTI/NRRD/MHA file, a DICOM series folder, or a list of DICOM files.
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
    fmt = volume_format(path)
    if fmt == "dicom":
        from medsr.io.dicom import read_dicom_series

        return read_dicom_series(path if path.is_dir() else [path], series_uid=series)
    if fmt == "nifti":
        return _read_nifti(path, volume_index)
    return _read_itk(path, fmt, volume_index)


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


def _check_size(path: Path, shape: Sequence[int]) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > MAX_VOXELS or any(int(s) < 0 for s in shape):
        raise MedsrError(
            f"{path}: header declares dimensions {tuple(int(s) for s in shape)} ({n:.3g} voxels), beyond what "
            f"medsr will allocate ({MAX_VOXELS:.0e}); the header is probably corrupt"
        )


def _read_nifti(path: Path, volume_index: int | None) -> MetaTensor:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for corrupt files
        raise MedsrError(f"{path}: not a readable NIfTI file ({err}); check the file is complete") from None
    _check_size(path, img.shape)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:
        raise MedsrError(f"{path}: voxel data cannot be read ({err}); the file may be truncated") from None
    data = _pick_volume(data, path, volume_index)
    hdr = img.header
    codes = (int(hdr["sform_code"]), int(hdr["qform_code"]))
    return make_volume(
        data,
        img.affine,
        format="nifti",
        filename_or_obj=str(path),
        original_dtype=np.dtype(img.get_data_dtype()).name,
        nifti_codes=codes,
    )


def _read_itk(path: Path, fmt: str, volume_index: int | None) -> MetaTensor:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        _check_size(path, reader.GetSize())
        image = reader.Execute()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise MedsrError(f"{path}: not a readable {fmt.upper()} file ({first})") from None
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
        LPS_TO_RAS @ lps,
        format=fmt,
        filename_or_obj=str(path),
        original_dtype=np.dtype(sitk.GetArrayViewFromImage(image).dtype).name,
    )
