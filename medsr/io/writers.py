"""Write MetaTensors as NIfTI, NRRD/MHA or a derived DICOM series, atomically.

``save_volume(volume, path)`` picks the format from ``path``: ``.nii``/``.nii.gz`` (NIfTI),
``.nrrd``/``.mha``/``.mhd`` (SimpleITK), or a path without a suffix for a DICOM input (a derived
series folder). The file is written under a temporary name and renamed when complete.

The voxel type (``dtype``): ``float32``, ``input`` (the input's stored type), or None, each format's
natural default (:func:`resolve_dtype`): float32 for NIfTI/NRRD/MHA, and for a DICOM series the
source's storage (``input``) when the input is a DICOM series, else float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from medsr.errors import MedsrError
from medsr.geometry import LPS_TO_RAS
from medsr.io.atomic import atomic_output, check_output
from medsr.io.formats import ITK_WRITE_SUFFIXES, NIFTI_SUFFIXES
from medsr.io.readers import native_stderr_captured
from medsr.io.volume import affine_of, count_nonfinite

DTYPES = ("float32", "input")
#: Suffixes the writing libraries recognise in lower case only (ITK writes x.MHA as x.mhd + x.zraw).
_LOWER_CASE_ONLY = (".nii.gz", ".nii", ".mha", ".mhd")


def check_dtype(dtype: str | None) -> None:
    """Refuse a ``dtype`` that is neither None (the format's default) nor one of :data:`DTYPES`."""
    if dtype is not None and dtype not in DTYPES:
        raise MedsrError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")


def resolve_dtype(dtype: str | None, fmt: str, volume: MetaTensor) -> str:
    """``dtype`` checked, or for None the natural default of output format ``fmt`` for ``volume``.

    A derived DICOM series of a DICOM input keeps the source's integer storage and rescale
    (``input``); every other output defaults to ``float32``.
    """
    check_dtype(dtype)
    if dtype is None:
        return "input" if fmt == "dicom" and volume.meta.get("dicom_template") else "float32"
    return dtype


def output_format(path: Path, volume: MetaTensor | None = None) -> str:
    """``nifti``, ``itk`` or ``dicom`` for an output path; a suffix-less path means a DICOM series folder."""
    name = path.name.lower()
    for suffix in _LOWER_CASE_ONLY:
        if name.endswith(suffix) and not path.name.endswith(suffix):
            raise MedsrError(
                f"{path}: write the suffix in lower case ({suffix}); nibabel and ITK know this format by its "
                f"lower-case suffix only and would write other files: use -o {path.name[: -len(suffix)]}{suffix}"
            )
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_WRITE_SUFFIXES):
        return "itk"
    if path.is_dir() or "." not in name:
        return "dicom"
    raise MedsrError(
        f"{path}: cannot tell the output format from {path.suffix!r}; use .nii.gz, .nii, .nrrd, .mha "
        "or a folder name (DICOM series, for DICOM input)"
    )


def save_volume(
    volume: MetaTensor,
    path: str | Path,
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    description_suffix: str = " medsr",
) -> Path:
    """Write ``volume`` (1, X, Y, Z) to ``path`` and return the path.

    Args:
        dtype: ``float32``, ``input`` (the input's stored type, rounded and clipped to its range) or None
            (the format's natural default, :func:`resolve_dtype`).
        overwrite: replace an existing output; the input itself is never replaced.
        description_suffix: appended to SeriesDescription of a derived DICOM series.
    """
    path = Path(path)
    check_dtype(dtype)
    source = volume.meta.get("filename_or_obj")
    inputs = (Path(source),) if isinstance(source, str) and source else ()
    check_output(path, overwrite=overwrite, inputs=inputs)
    fmt = output_format(path, volume)
    dtype = resolve_dtype(dtype, fmt, volume)
    data = _spatial_array(volume)
    if count_nonfinite(data):
        raise MedsrError(f"{path}: refusing to write a volume with NaN or infinite voxels")
    if fmt == "dicom":
        from medsr.io.dicom import write_dicom_series

        with atomic_output(path, overwrite=overwrite, directory=True) as tmp:
            write_dicom_series(volume, tmp, dtype=dtype, description_suffix=description_suffix)
        return path
    out_dtype = _output_dtype(volume, dtype)
    data = _cast(data, out_dtype)
    with atomic_output(path, overwrite=overwrite) as tmp:
        if fmt == "nifti":
            _write_nifti(data, affine_of(volume), volume, tmp)
        else:
            try:
                with native_stderr_captured():
                    _write_itk(data, affine_of(volume), tmp)
            except RuntimeError as err:  # ITK reports I/O failures (disk full...) as RuntimeError
                reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
                raise MedsrError(
                    f"{path}: SimpleITK could not write it ({reason}); nothing was written"
                ) from None
    return path


def _spatial_array(volume: torch.Tensor) -> np.ndarray:
    arr = (
        volume.detach().cpu().as_subclass(torch.Tensor).numpy()
        if isinstance(volume, torch.Tensor)
        else volume
    )
    arr = np.asarray(arr)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise MedsrError(f"cannot write {arr.shape[0]} channels; medsr writes one 3-D volume per file")
        arr = arr[0]
    if arr.ndim != 3:
        raise MedsrError(f"expected a 3-D volume, got shape {arr.shape}")
    return arr


def _output_dtype(volume: MetaTensor, dtype: str) -> np.dtype:
    if dtype == "float32":
        return np.dtype(np.float32)
    name = volume.meta.get("original_dtype")
    return np.dtype(name) if name else np.dtype(np.float32)


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip to an integer dtype's range; floats are cast directly."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded = np.rint(data)  # one float copy, clipped in place (a large output is not copied thrice)
        return np.clip(rounded, info.min, info.max, out=rounded).astype(dtype)
    if dtype == np.bool_:
        return (data > 0.5).astype(np.uint8)
    return data.astype(dtype, copy=False)


def _write_nifti(data: np.ndarray, affine: np.ndarray, volume: MetaTensor, tmp: Path) -> None:
    import nibabel as nib

    sform_code, qform_code = (int(c) for c in volume.meta.get("nifti_codes", (1, 1)))
    if sform_code == 0 and qform_code == 0:
        sform_code = qform_code = 1  # scanner-based: the affine is real geometry
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=qform_code)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(data.dtype)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    nib.save(img, str(tmp))


def _write_itk(data: np.ndarray, affine: np.ndarray, tmp: Path) -> None:
    import SimpleITK as sitk

    lps = LPS_TO_RAS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.swapaxes(data, 0, 2)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in lps[:3, 3]])
    image.SetDirection([float(d) for d in (lps[:3, :3] / spacing[None, :]).ravel()])
    sitk.WriteImage(image, str(tmp), useCompression=True)
