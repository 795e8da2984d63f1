"""pydicom's shipped test series, SimpleITK as the independent reader, and edits that break a series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from nibabel.affines import apply_affine

from medsr.geometry import LPS_TO_RAS

DATA = Path(pydicom.data.__file__).parent / "test_files"
DIRTESTS = DATA / "dicomdirtests"
CT5N = DIRTESTS / "98892001" / "CT5N"
MR2 = DIRTESTS / "98892003" / "MR2"
LOCALIZER_UID = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.481"
PILOT_UID = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.136"


def sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def sitk_array_xyz(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float64)


def assert_affine_matches_sitk(affine: np.ndarray, image: sitk.Image, atol: float) -> None:
    """World coordinates (RAS mm) of several voxel indices agree between ``affine`` and ``image``."""
    size = image.GetSize()
    corners = [(0, 0, 0), (size[0] - 1, 0, 0), (0, size[1] - 1, 0), (0, 0, size[2] - 1)]
    for idx in [*corners, (size[0] - 1, size[1] - 1, size[2] - 1), (size[0] // 2, 1, size[2] // 2)]:
        world_sitk = LPS_TO_RAS[:3, :3] @ np.array(image.TransformIndexToPhysicalPoint([int(i) for i in idx]))
        np.testing.assert_allclose(apply_affine(affine, idx), world_sitk, atol=atol, rtol=0)


def assert_same_world(
    a: np.ndarray, aff_a: np.ndarray, b: np.ndarray, aff_b: np.ndarray, atol_mm: float, tol: float
):
    """Every voxel of ``b`` sits (to ``atol_mm``) on a voxel of ``a`` with the same value (to ``tol``)."""
    idx_b = np.stack(np.meshgrid(*[np.arange(n) for n in b.shape], indexing="ij"), -1).reshape(-1, 3)
    world = apply_affine(aff_b, idx_b)
    idx_a = apply_affine(np.linalg.inv(aff_a), world)
    nearest = np.rint(idx_a).astype(int)
    assert np.abs(apply_affine(aff_a, nearest) - world).max() < atol_mm
    assert (nearest >= 0).all() and (nearest < np.array(a.shape)).all()
    if a.shape == b.shape:  # a bijection: no voxel of ``a`` is hit twice
        assert len({tuple(i) for i in nearest}) == len(nearest)
    np.testing.assert_allclose(b.reshape(-1), a[tuple(nearest.T)], atol=tol, rtol=0)


def copy_ct5n(folder: Path, edit=None) -> list[Path]:
    """CT5N's files copied into ``folder`` as ct{k}.dcm; ``edit(k, ds)`` changes slice k (False: drop it)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, src in enumerate(sorted(CT5N.iterdir())):
        dst = folder / f"ct{k}.dcm"
        if edit is None:
            shutil.copy(src, dst)
        else:
            ds = pydicom.dcmread(src)
            if edit(k, ds) is not False:
                ds.save_as(dst)
            else:
                continue
        out.append(dst)
    return out


def oblique_affine() -> np.ndarray:
    """Oblique, flipped (negative through-plane step), anisotropic RAS affine, orthogonal in-plane axes."""
    rot = np.linalg.qr(np.array([[0.8, -0.3, 0.5], [0.4, 0.9, -0.2], [-0.3, 0.2, 0.9]]))[0]
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.7, 1.3, -3.0])
    aff[:3, 3] = [12.5, -40.25, 7.0]
    return aff


def _move_ipp_to(target: int):
    def edit(k, ds):
        if k == 3:
            ref = pydicom.dcmread(sorted(CT5N.iterdir())[target], stop_before_pixels=True)
            ds.ImagePositionPatient = ref.ImagePositionPatient

    return edit


def _set_tag(slice_k: int, keyword: str, value=None):
    """Edit that sets ``keyword`` on slice ``slice_k`` (deletes it when ``value`` is None)."""

    def edit(k, ds):
        if k == slice_k:
            setattr(ds, keyword, value) if value is not None else delattr(ds, keyword)

    return edit


BROKEN = {
    "missing-slice": (lambda k, ds: k != 2, "non-uniform slice spacing: expected 2.500 mm", ["ct1", "ct3"]),
    "duplicate": (_move_ipp_to(2), "duplicate slice position", ["ct2", "ct3"]),
    "mixed-orientation": (
        _set_tag(1, "ImageOrientationPatient", [1, 0, 0, 0, 0.9950042, 0.0998334]),
        "different orientations",
        ["ct1"],
    ),
    "missing-ipp": (_set_tag(4, "ImagePositionPatient"), "missing ImagePositionPatient", ["ct4"]),
    "mixed-rows": (_set_tag(1, "Rows", 8), "slices differ in size", ["ct1"]),
    "mixed-spacing": (_set_tag(1, "PixelSpacing", [0.5, 0.5]), "differ in PixelSpacing", ["ct1"]),
    "multiframe": (_set_tag(0, "NumberOfFrames", 2), "not supported yet", ["ct0"]),
}
