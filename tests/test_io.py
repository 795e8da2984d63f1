"""NIfTI and NRRD/MHA reading and writing keep geometry exact (nibabel and SimpleITK cross-checks)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nibabel.affines import apply_affine

from medsr.errors import MedsrError
from medsr.inference.interpolate import interpolate_upscale
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of, count_nonfinite, make_volume
from medsr.io.writers import save_volume
from tests.helpers.volumes import blob_volume, make_affine

INDICES = np.array([[0, 0, 0], [3, 5, 2], [7, 1, 4], [9, 10, 5]], dtype=float)


def sitk_world_ras(path: Path, indices: np.ndarray) -> np.ndarray:
    """World RAS mm of voxel indices (X, Y, Z) according to SimpleITK (which works in LPS)."""
    image = sitk.ReadImage(str(path))
    lps = np.array(
        [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx]) for idx in indices]
    )
    return lps * np.array([-1.0, -1.0, 1.0])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_affine_and_values(tmp_path: Path, seed: int, suffix: str) -> None:
    rng = np.random.default_rng(seed)
    flips = tuple(int(f) for f in rng.choice([-1, 1], size=3))
    affine = make_affine(tuple(rng.uniform(0.4, 5.0, size=3)), rng=rng, flips=flips)
    data = blob_volume((10, 11, 6), rng)
    path = tmp_path / f"vol{suffix}"
    save_volume(make_volume(data, affine), path)
    back = load_volume(path)
    np.testing.assert_allclose(affine_of(back), affine, atol=1e-5)
    np.testing.assert_array_equal(back.numpy()[0], data)
    np.testing.assert_allclose(
        sitk_world_ras(path, INDICES[:, :3] % [10, 11, 6]),
        apply_affine(affine, INDICES % [10, 11, 6]),
        atol=1e-4,
    )


@pytest.mark.parametrize("factor", [2, 3, 4, 2.5])
def test_upscaled_file_lands_where_the_convention_says(
    tmp_path: Path, oblique_nifti: Path, factor: float
) -> None:
    volume = load_volume(oblique_nifti)
    up = interpolate_upscale(volume, 2, factor, "linear")
    path = tmp_path / "up.nii.gz"
    save_volume(up, path)
    n_in, n_out = 9, round(9 * factor)
    s = n_out / n_in
    out_idx = np.array([[2, 3, i] for i in range(n_out)], dtype=float)
    in_idx = np.array([[2, 3, (i + 0.5) / s - 0.5] for i in range(n_out)])
    expected = apply_affine(nib.load(str(oblique_nifti)).affine, in_idx)
    np.testing.assert_allclose(apply_affine(nib.load(str(path)).affine, out_idx), expected, atol=1e-4)
    np.testing.assert_allclose(sitk_world_ras(path, out_idx), expected, atol=1e-4)
    # Physical extent: first/last output voxel edges meet the input's outer slice edges.
    edge_in = apply_affine(nib.load(str(oblique_nifti)).affine, [[2, 3, -0.5], [2, 3, n_in - 0.5]])
    edge_out = apply_affine(nib.load(str(path)).affine, [[2, 3, -0.5], [2, 3, n_out - 0.5]])
    np.testing.assert_allclose(edge_out, edge_in, atol=1e-4)


def test_linear_interpolation_reproduces_a_ramp(oblique_nifti: Path) -> None:
    data = np.broadcast_to(np.arange(9, dtype=np.float32) * 10.0, (4, 5, 9)).copy()
    up = interpolate_upscale(make_volume(data, np.diag([1.0, 1.0, 4.0, 1.0])), 2, 4, "linear")
    inside = up.numpy()[0, 0, 0, 2:-2]
    expected = ((np.arange(36)[2:-2] + 0.5) / 4 - 0.5) * 10.0
    np.testing.assert_allclose(inside, expected, atol=1e-4)


def test_nifti_codes_and_integer_dtype_are_kept(tmp_path: Path, oblique_nifti: Path) -> None:
    img = nib.load(str(oblique_nifti))
    img.set_sform(img.affine, code=2)
    img.set_qform(img.affine, code=1)
    src = tmp_path / "codes.nii.gz"
    nib.save(img, str(src))
    volume = load_volume(src)
    assert volume.meta["original_dtype"] == "int16"
    out = tmp_path / "out.nii.gz"
    save_volume(volume * 1.0 + 0.4, out, dtype="input")
    back = nib.load(str(out))
    assert back.get_data_dtype() == np.int16
    assert (int(back.header["sform_code"]), int(back.header["qform_code"])) == (2, 1)
    np.testing.assert_allclose(back.get_qform(), img.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(img.dataobj))


def test_input_dtype_clips_to_range(tmp_path: Path) -> None:
    volume = make_volume(np.array([[[-5.0, 300.7]]]), np.eye(4), original_dtype="uint8")
    save_volume(volume, tmp_path / "c.nii.gz", dtype="input")
    assert np.asarray(nib.load(str(tmp_path / "c.nii.gz")).dataobj).tolist() == [[[0, 255]]]


def test_scaled_nifti_is_read_in_real_units(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(0.5, -10.0)
    nib.save(img, str(tmp_path / "s.nii"))
    np.testing.assert_allclose(
        load_volume(tmp_path / "s.nii").numpy()[0], np.arange(24).reshape(2, 3, 4) * 0.5 - 10
    )


def test_four_d_needs_a_volume_index(tmp_path: Path) -> None:
    data = np.stack([np.full((3, 4, 5), v, dtype=np.float32) for v in (1, 2, 3)], axis=-1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "f.nii.gz"))
    with pytest.raises(MedsrError, match=r"4-D \(3, 4, 5, 3\).*--volume-index"):
        load_volume(tmp_path / "f.nii.gz")
    assert float(load_volume(tmp_path / "f.nii.gz", volume_index=2).max()) == 3.0
    with pytest.raises(MedsrError, match="out of range"):
        load_volume(tmp_path / "f.nii.gz", volume_index=3)


def test_two_d_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((5, 6), dtype=np.float32), np.eye(4)), str(tmp_path / "flat.nii"))
    with pytest.raises(MedsrError, match="2-D"):
        load_volume(tmp_path / "flat.nii")


def test_existing_output_and_input_are_never_replaced(tmp_path: Path, oblique_nifti: Path) -> None:
    volume = load_volume(oblique_nifti)
    before = oblique_nifti.read_bytes()
    with pytest.raises(MedsrError, match="is the input"):
        save_volume(volume, oblique_nifti, overwrite=True)
    assert oblique_nifti.read_bytes() == before
    out = tmp_path / "o.nii.gz"
    save_volume(volume, out)
    with pytest.raises(MedsrError, match="--overwrite"):
        save_volume(volume, out)
    save_volume(volume * 2, out, overwrite=True)
    np.testing.assert_allclose(load_volume(out).numpy(), volume.numpy() * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nii.gz", "oblique.nii.gz"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    volume = make_volume(np.full((3, 3, 3), np.nan), np.eye(4))
    with pytest.raises(MedsrError, match="NaN"):
        save_volume(volume, tmp_path / "nan.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk", [1, 7, 2**24])
def test_count_nonfinite_counts_across_chunks(chunk: int) -> None:
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, 0], data[1, 2, 3], data[3, 4, 5] = np.nan, np.inf, -np.inf
    assert count_nonfinite(data, chunk) == 3
    assert count_nonfinite(torch.from_numpy(data), chunk) == 3
    assert count_nonfinite(data.astype(">f8"), chunk) == 3  # big-endian, as some files store it
    assert count_nonfinite(np.ones(5, np.int16), chunk) == 0


def test_describe_counts_non_finite_voxels() -> None:
    from medsr.io.describe import describe

    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    data[0, 1, 2], data[1, 2, 3] = np.nan, -np.inf
    info = describe(make_volume(data, make_affine((1.0, 1.0, 3.0))))
    assert info["non_finite_voxels"] == 2 and info["intensity_range"] == [0.0, 22.0]


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MedsrError, match="no such file"):
        load_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(MedsrError, match="unknown volume format"):
        load_volume(tmp_path / "x.txt")
    (tmp_path / "junk.nii.gz").write_bytes(b"\x00not a nifti" * 10)
    with pytest.raises(MedsrError, match="junk.nii.gz"):
        load_volume(tmp_path / "junk.nii.gz")
