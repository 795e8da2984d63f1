"""A real scan that ships inside a package: nilearn's MNI152 2009a 1 mm T1 template."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medsr.inference.interpolate import interpolate_upscale
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of
from medsr.io.writers import save_volume
from medsr.jobs.demo import demo_scan_path


def test_mni152_reads_with_its_geometry(mni_path: Path) -> None:
    volume = load_volume(mni_path)
    img = nib.load(str(mni_path))
    assert tuple(volume.shape) == (1, 197, 233, 189)
    np.testing.assert_allclose(affine_of(volume), img.affine)
    np.testing.assert_array_equal(volume.numpy()[0], np.asarray(img.dataobj, dtype=np.float32))


def test_mni152_thick_axial_upscale_round_trip(tmp_path: Path, mni_path: Path) -> None:
    """Average 4-slice axial slabs (a 4 mm boxcar scan), upscale x4: the output lands on the template grid."""
    volume = load_volume(mni_path)
    img = nib.load(str(mni_path))
    data = np.asarray(img.dataobj, dtype=np.float32)[:, :, :188]
    thick = data.reshape(197, 233, 47, 4).mean(axis=-1)
    # Slab k covers template slices 4k..4k+3: its centre is template index 4k + 1.5.
    thick_affine = img.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 4, 1.5], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(thick, thick_affine), str(tmp_path / "thick.nii.gz"))
    up = interpolate_upscale(load_volume(tmp_path / "thick.nii.gz"), 2, 4, "bspline")
    save_volume(up, tmp_path / "up.nii.gz")
    assert up.shape[-1] == 188
    up_img = sitk.ReadImage(str(tmp_path / "up.nii.gz"))
    for i in (0, 50, 187):
        ras = np.array(up_img.TransformIndexToPhysicalPoint([10, 20, i])) * [-1, -1, 1]
        template_index = np.linalg.solve(img.affine, np.append(ras, 1.0))[:3]
        np.testing.assert_allclose(template_index, [10, 20, i], atol=1e-4)
    np.testing.assert_allclose(nib.load(str(tmp_path / "up.nii.gz")).affine, img.affine, atol=1e-5)
    # Cubic interpolation of the 4 mm scan stays close to the truth inside the head.
    truth = volume.numpy()[0][:, :, :188]
    err = np.abs(up.numpy()[0] - truth)[truth > 50]
    assert np.median(err) < 15


def test_bundled_demo_scan_is_the_template_crop(mni_path: Path) -> None:
    crop = load_volume(demo_scan_path())
    full = load_volume(mni_path)
    corner = np.linalg.solve(affine_of(full), affine_of(crop)[:, 3])[:3]
    i, j, k = (int(round(c)) for c in corner)
    x, y, z = crop.shape[1:]
    np.testing.assert_array_equal(crop.numpy()[0], full.numpy()[0][i : i + x, j : j + y, k : k + z])
