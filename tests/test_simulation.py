"""Thick-slice simulation: physics, geometry, noise, MONAI composition and ``medsr simulate``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose, ScaleIntensityd
from nibabel.affines import apply_affine
from typer.testing import CliRunner

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of, make_volume
from medsr.transforms import (
    RandSimulateThickSlicesd,
    SimulateThickSlices,
    SimulateThickSlicesd,
    simulate_thick_slices,
)
from medsr.transforms.functional import FWHM_PER_SIGMA
from medsr.transforms.noise import foreground_signal
from tests.helpers.volumes import DEVICES, blob_volume, make_affine


def volume(shape=(6, 5, 24), spacing=(0.9, 1.1, 1.0), seed=0, channels=1, **affine_kw):
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 100, size=(channels, *shape)).astype(np.float32)
    return make_volume(data, make_affine(spacing, rng=rng, **affine_kw))


def hr_array(vol) -> np.ndarray:
    return vol.as_subclass(torch.Tensor).double().numpy()


# --- physics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis,ratio", [(0, 2), (1, 3), (2, 4)])
def test_boxcar_integer_ratio_is_the_slab_mean(axis: int, ratio: int, device: str) -> None:
    vol = volume(shape=(12, 12, 12), spacing=(1.5, 1.5, 1.5), channels=2, flips=(1, -1, 1))
    hr_mm = geometry.voxel_sizes(affine_of(vol))[axis]
    lr = simulate_thick_slices(vol.to(device), ratio * hr_mm, axis=axis, profile="boxcar")
    hr = np.moveaxis(hr_array(vol), axis + 1, -1)
    expected = hr.reshape(*hr.shape[:-1], 12 // ratio, ratio).mean(-1)
    got = np.moveaxis(lr.cpu().as_subclass(torch.Tensor).double().numpy(), axis + 1, -1)
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


def test_gaussian_response_fwhm_and_centre_match_the_request() -> None:
    """Sweep one bright HR slice through every position: LR slice k responds with FWHM = thickness."""
    n, hr_mm, thickness = 200, 0.25, 5.0
    data = np.zeros((n, 1, n), np.float32)
    data[np.arange(n), 0, np.arange(n)] = 1.0  # row x holds the impulse at HR slice x
    vol = make_volume(data, make_affine((1.0, 1.0, hr_mm), rng=np.random.default_rng(3), flips=(1, 1, -1)))
    lr = simulate_thick_slices(vol, thickness, axis=2)
    ratio, k = thickness / hr_mm, 4
    response = lr[0, :, 0, k].double().numpy()  # response[x] = weight of HR slice x in LR slice k
    x_mm = np.arange(n) * hr_mm
    half = response.max() / 2
    above = np.flatnonzero(response >= half)
    lo, hi = above[0], above[-1]
    left = np.interp(half, response[[lo - 1, lo]], x_mm[[lo - 1, lo]])
    right = np.interp(half, response[[hi + 1, hi]], x_mm[[hi + 1, hi]])
    assert abs((right - left) - thickness) <= 0.05 * thickness
    centroid = (response * np.arange(n)).sum() / response.sum()
    assert centroid == pytest.approx(ratio * k + (ratio - 1) / 2, abs=1e-3)


@pytest.mark.parametrize(
    "profile,thickness,spacing", [("gaussian", 3.0, 3.0), ("boxcar", 2.0, 3.0), ("gaussian", 4.0, 2.5)]
)
def test_interior_mean_intensity_is_preserved(profile: str, thickness: float, spacing: float) -> None:
    data = blob_volume((16, 16, 90)) + 100.0
    vol = make_volume(data, make_affine((1.0, 1.0, 1.0)))
    lr = simulate_thick_slices(vol, thickness, spacing, axis=2, profile=profile)
    lr_mean = lr[0, 4:-4, 4:-4, 3:-3].mean().item()
    # HR mean over the physical extent of the interior slabs, partial HR slices weighted by their overlap
    m = lr.shape[-1]
    start, stop = 3 * spacing - 0.5, (m - 3) * spacing - 0.5  # HR index extent of slabs 3 .. m-4
    j = np.arange(data.shape[-1])
    overlap = np.clip(np.minimum(j + 0.5, stop) - np.maximum(j - 0.5, start), 0, None)
    hr_mean = float((data[4:-4, 4:-4] * overlap).sum() / (overlap.sum() * 8 * 8))
    assert lr_mean == pytest.approx(hr_mean, rel=0.005)


def test_non_integer_ratio_weights_partial_slices() -> None:
    """1 mm HR to 2.5 mm boxcar slabs: each slab takes two whole slices and half of a shared one."""
    vol = volume(shape=(3, 4, 11), spacing=(1.0, 1.0, 1.0))
    lr = simulate_thick_slices(vol, 2.5, axis=2, profile="boxcar")
    hr = hr_array(vol)[0]
    assert lr.shape[-1] == 4  # floor(11 / 2.5) whole slabs
    expected = [
        (hr[..., 0] + hr[..., 1] + 0.5 * hr[..., 2]) / 2.5,
        (0.5 * hr[..., 2] + hr[..., 3] + hr[..., 4]) / 2.5,
        (hr[..., 5] + hr[..., 6] + 0.5 * hr[..., 7]) / 2.5,
        (0.5 * hr[..., 7] + hr[..., 8] + hr[..., 9]) / 2.5,
    ]
    np.testing.assert_allclose(lr[0].double().numpy(), np.stack(expected, -1), rtol=1e-5)
    assert geometry.voxel_sizes(affine_of(lr))[2] == pytest.approx(2.5)


def test_gap_skips_slices_and_overlap_shares_them() -> None:
    vol = volume(shape=(3, 4, 16), spacing=(1.0, 1.0, 1.0))
    hr = hr_array(vol)[0]
    gap = simulate_thick_slices(vol, 2.0, 4.0, axis=2, profile="boxcar")  # 2 mm slices every 4 mm
    np.testing.assert_allclose(gap[0].double().numpy(), (hr[..., 1::4] + hr[..., 2::4]) / 2, rtol=1e-5)
    assert gap.meta["simulation"]["gap_mm"] == pytest.approx(2.0)
    overlap = simulate_thick_slices(vol, 4.0, 2.0, axis=2, profile="boxcar")  # 4 mm slices every 2 mm
    assert overlap.shape[-1] == 8
    for k in range(1, 7):  # slab k covers HR slices 2k-1 .. 2k+2
        np.testing.assert_allclose(
            overlap[0, ..., k].double().numpy(), hr[..., 2 * k - 1 : 2 * k + 3].mean(-1), rtol=1e-5
        )
    # slab 0 reaches past the volume's edge: the profile is cut there and renormalised
    np.testing.assert_allclose(overlap[0, ..., 0].double().numpy(), hr[..., 0:3].mean(-1), rtol=1e-5)


def test_spacing_noise_does_not_lose_the_last_slab() -> None:
    """DICOM positions rounded to a few decimals give 0.99999996 mm slices: 12 of them still make 4 slabs."""
    vol = volume(shape=(3, 3, 12), spacing=(0.8, 0.8, 0.99999996))
    lr = simulate_thick_slices(vol, 3.0, axis=2, profile="boxcar")
    assert lr.shape[-1] == 4
    np.testing.assert_allclose(lr[0, ..., 3].numpy(), hr_array(vol)[0, ..., 9:].mean(-1), rtol=1e-4)


def test_user_kernel_matches_the_named_profiles() -> None:
    vol = volume(shape=(4, 4, 30), spacing=(1.0, 1.0, 0.5))
    box = simulate_thick_slices(vol, 3.0, axis=2, profile="boxcar")
    user_box = simulate_thick_slices(vol, 3.0, axis=2, profile=np.ones(30), kernel_step=0.1)
    np.testing.assert_allclose(user_box.numpy(), box.numpy(), rtol=1e-5)
    x = np.arange(-100, 101) * 0.05
    sigma = 3.0 / FWHM_PER_SIGMA
    user_gauss = simulate_thick_slices(
        vol, None, axis=2, profile=np.exp(-(x**2) / (2 * sigma**2)), kernel_step=0.05
    )
    gauss = simulate_thick_slices(vol, 3.0, axis=2)
    np.testing.assert_allclose(user_gauss.numpy(), gauss.numpy(), rtol=2e-3)
    assert user_gauss.meta["slice_thickness"] == pytest.approx(3.0, rel=1e-3)  # the kernel's own FWHM
    assert user_gauss.meta["simulation"]["profile"] == "kernel"


# --- geometry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, 1, -1)])
@pytest.mark.parametrize("axis,spacing", [(0, 2.4), (1, 3.3), (2, 2.0), (2, 2.5)])
def test_lr_slice_centres_sit_at_the_physical_slab_centres(flips, axis: int, spacing: float) -> None:
    affine = make_affine((0.8, 1.1, 1.0), rng=np.random.default_rng(11), flips=flips)
    vol = make_volume(np.zeros((13, 10, 17), np.float32), affine)
    lr = simulate_thick_slices(vol, spacing, axis=axis, profile="boxcar")
    hr_mm = geometry.voxel_sizes(affine)[axis]
    ratio = spacing / hr_mm
    m = lr.shape[1 + axis]
    assert m == int(np.floor(vol.shape[1 + axis] / ratio + 1e-9))
    # independent: slab k spans HR index [-0.5 + k*ratio, -0.5 + (k+1)*ratio]; its centre in world mm
    idx = np.zeros((m, 3))
    idx[:, axis] = -0.5 + (np.arange(m) + 0.5) * ratio
    lr_idx = np.zeros((m, 3))
    lr_idx[:, axis] = np.arange(m)
    np.testing.assert_allclose(apply_affine(affine_of(lr), lr_idx), apply_affine(affine, idx), atol=1e-9)
    assert geometry.voxel_sizes(affine_of(lr))[axis] == pytest.approx(spacing)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_upscaling_the_lr_grid_lands_on_the_hr_grid(ratio: int) -> None:
    affine = make_affine((0.7, 0.9, 1.2), rng=np.random.default_rng(5), flips=(-1, 1, -1))
    vol = make_volume(np.zeros((5, 6, 12), np.float32), affine)
    lr = simulate_thick_slices(vol, 1.2 * ratio, axis=2)
    shape, up_affine = geometry.upscaled_grid(tuple(lr.shape), affine_of(lr), 2, ratio)
    assert shape == (5, 6, 12)
    np.testing.assert_allclose(up_affine, affine, atol=1e-9)


def test_world_letter_axis_on_an_oblique_permuted_grid() -> None:
    # array axis 0 runs (mostly) inferior-to-superior, axis 2 mostly left-to-right
    perm = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], float)
    affine = make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(2))
    affine[:3, :3] = affine[:3, :3] @ perm.T
    vol = make_volume(np.random.default_rng(0).uniform(size=(12, 8, 9)).astype(np.float32), affine)
    s_axis = geometry.axis_from_direction(affine, "S")
    assert s_axis == 0
    for letter in ("S", "I", "s"):
        lr = simulate_thick_slices(vol, 3.0, axis=letter)
        assert tuple(lr.shape[1:]) == (4, 8, 9)
        assert lr.meta["simulation"]["axis"] == 0
    # isotropic input without an axis: the axis closest to S
    assert tuple(simulate_thick_slices(vol, 3.0).shape[1:]) == (4, 8, 9)


def test_default_axis_of_an_anisotropic_volume_is_the_thickest() -> None:
    vol = volume(shape=(6, 12, 5), spacing=(0.5, 1.5, 0.5))
    lr = simulate_thick_slices(vol, 3.0)
    assert tuple(lr.shape[1:]) == (6, 6, 5)
    assert lr.meta["slice_thickness"] == 3.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"slice_thickness": 2.0, "slice_spacing": 0.5}, "finer than"),
        ({"slice_thickness": -1.0}, "must be positive"),
        ({"slice_thickness": 2.0, "profile": "triangle"}, "not one of gaussian, boxcar"),
        ({"slice_thickness": 2.0, "noise": "poisson:3"}, "not understood"),
        ({"slice_thickness": 2.0, "noise": "rician:-5"}, "must be a positive number"),
        ({"slice_thickness": 2.0, "axis": 3}, "not an array axis"),
        ({"slice_thickness": 50.0}, "longer than the volume"),
        ({"slice_thickness": None, "profile": np.ones(3)}, "kernel_step"),
        ({"slice_thickness": None}, "needs a slice thickness"),
        (  # two lobes 40 mm apart, both outside a 24 mm volume
            {
                "slice_thickness": 2.0,
                "slice_spacing": 24.0,
                "profile": np.r_[1, np.zeros(399), 1],
                "kernel_step": 0.1,
            },
            "no weight inside the volume",
        ),
    ],
)
def test_bad_values_are_user_errors(kwargs, match: str) -> None:
    with pytest.raises(MedsrError, match=match):
        simulate_thick_slices(volume(), axis=kwargs.pop("axis", 2), **kwargs)


# --- noise -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_noise_has_the_requested_sigma_and_follows_the_seed(device: str) -> None:
    vol = volume(shape=(40, 40, 20)).to(device)
    clean = simulate_thick_slices(vol, 2.0, axis=2)
    noisy = simulate_thick_slices(vol, 2.0, axis=2, noise="gaussian:7.5", rng=1)
    assert (noisy - clean).std().item() == pytest.approx(7.5, rel=0.03)
    assert torch.equal(noisy, simulate_thick_slices(vol, 2.0, axis=2, noise="gaussian:7.5", rng=1))
    assert not torch.equal(noisy, simulate_thick_slices(vol, 2.0, axis=2, noise="gaussian:7.5", rng=2))
    assert noisy.meta["simulation"]["noise_sigma"] == 7.5


def test_rician_noise_snr_is_relative_to_the_foreground_median() -> None:
    data = np.zeros((60, 60, 20), np.float32)
    data[10:50, 10:50] = 200.0  # foreground signal 200 on a zero background
    vol = make_volume(data, make_affine((1.0, 1.0, 1.0)))
    noisy = simulate_thick_slices(vol, 2.0, axis=2, profile="boxcar", noise="rician:20", rng=0)
    sigma = 200.0 / 20
    assert noisy.meta["simulation"]["noise_sigma"] == pytest.approx(sigma)
    fg, bg = noisy[0, 15:45, 15:45], noisy[0, :8, :8]
    assert fg.std().item() == pytest.approx(sigma, rel=0.05)  # high SNR: nearly Gaussian
    assert bg.mean().item() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh background
    assert bg.min().item() >= 0.0


def test_transform_noise_is_reproducible_with_set_random_state() -> None:
    vol = volume(shape=(8, 8, 12))
    a = SimulateThickSlices(3.0, axis=2, noise="gaussian:5").set_random_state(seed=3)
    b = SimulateThickSlices(3.0, axis=2, noise="gaussian:5").set_random_state(seed=3)
    first = a(vol)
    assert torch.equal(first, b(vol))
    assert not torch.equal(first, a(vol))  # the next call draws new noise


# --- MONAI composition -------------------------------------------------------------------------------


def test_dictionary_transform_adds_lr_keys() -> None:
    data = {"hr": volume(seed=1), "t2": volume(seed=2)}
    out = SimulateThickSlicesd(keys=["hr", "t2"], slice_thickness=4.0, axis="S")(data)
    assert set(out) == {"hr", "t2", "lr", "t2_lr"}
    assert out["hr"] is data["hr"]
    assert out["lr"].shape[-1] == 6 and out["lr"].meta["slice_thickness"] == 4.0
    named = SimulateThickSlicesd(keys="hr", slice_thickness=4.0, axis=2, output_keys="thick")(data)
    assert "thick" in named
    with pytest.raises(MedsrError, match="output_keys"):
        SimulateThickSlicesd(keys=["hr", "t2"], slice_thickness=4.0, output_keys="lr")


def test_random_transform_draws_axes_and_checks_its_ranges() -> None:
    vol = volume(shape=(12, 12, 12), spacing=(1.0, 1.0, 1.0))
    rand = RandSimulateThickSlicesd(
        keys="hr", thickness_range=3.0, axis=[0, "A"], noise="rician", noise_range=(10, 20), noise_prob=0.0
    ).set_random_state(seed=0)
    shapes = {tuple(rand({"hr": vol})["lr"].shape[1:]) for _ in range(12)}
    assert shapes == {(4, 12, 12), (12, 4, 12)}
    assert rand({"hr": vol})["lr"].meta["simulation"]["noise"] == "none"  # noise_prob=0
    with pytest.raises(MedsrError, match="thickness_range"):
        RandSimulateThickSlicesd(keys="hr", thickness_range=(4.0, 2.0))
    with pytest.raises(MedsrError, match="noise_range"):
        RandSimulateThickSlicesd(keys="hr", thickness_range=(2.0, 4.0), noise="rician")
    with pytest.raises(MedsrError, match="not one of gaussian, boxcar"):
        RandSimulateThickSlicesd(keys="hr", thickness_range=(2.0, 4.0), profiles=("gaussian", "sinc"))


def _pairs(seed: int, via: str) -> list[tuple[torch.Tensor, dict]]:
    items = [{"hr": volume(shape=(6, 6, 30), seed=s)} for s in range(3)]
    pipeline = Compose(
        [
            ScaleIntensityd(keys="hr"),
            RandSimulateThickSlicesd(
                keys="hr",
                thickness_range=(1.5, 4.0),
                spacing_range=(2.0, 5.0),
                profiles=("gaussian", "boxcar"),
                noise="gaussian",
                noise_range=(0.01, 0.05),
                axis=2,
            ),
        ]
    )
    dataset = CacheDataset(items, pipeline, cache_rate=1.0, num_workers=0, progress=False)
    if via == "set_random_state":
        pipeline.set_random_state(seed=seed)
        return [(item["lr"].as_subclass(torch.Tensor), item["lr"].meta["simulation"]) for item in dataset]
    # MONAI's DataLoader reseeds the transforms from its torch generator
    loader = DataLoader(dataset, batch_size=1, num_workers=0, generator=torch.Generator().manual_seed(seed))
    return [
        (
            batch["lr"][0].as_subclass(torch.Tensor),
            {k: v[0] for k, v in batch["lr"].meta["simulation"].items()},
        )
        for batch in loader
    ]


@pytest.mark.parametrize("via", ["set_random_state", "dataloader_generator"])
def test_random_transform_in_cache_dataset_is_seeded(via: str) -> None:
    a, b, c = _pairs(0, via), _pairs(0, via), _pairs(1, via)
    assert len(a) == 3
    for (lr_a, sim_a), (lr_b, sim_b) in zip(a, b, strict=True):
        assert torch.equal(lr_a, lr_b)
        assert sim_a == sim_b
    for (lr_a, _), (lr_c, _) in zip(a, c, strict=True):
        assert lr_a.shape != lr_c.shape or not torch.equal(lr_a, lr_c)
    thicknesses = {float(sim["slice_thickness_mm"]) for _, sim in a}
    assert len(thicknesses) == 3 and all(1.5 <= t <= 4.0 for t in thicknesses)
    assert all(lr.shape[-1] == int(30 / float(sim["slice_spacing_mm"]) + 1e-9) for lr, sim in a)


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_writes_lr_and_sidecar(oblique_nifti: Path) -> None:
    from medsr.cli.main import app

    args = ["--thickness", "4", "--spacing", "5", "--axis", "1", "--noise", "gaussian:2", "--seed", "7"]
    result = CliRunner().invoke(app, ["simulate", str(oblique_nifti), *args])
    assert result.exit_code == 0, result.output
    out = oblique_nifti.with_name("oblique_lr.nii.gz")
    sidecar = json.loads(oblique_nifti.with_name("oblique_lr.json").read_text())
    img = nib.load(str(out))
    hr = nib.load(str(oblique_nifti))
    hr_mm = geometry.voxel_sizes(hr.affine)[1]
    assert img.shape == (20, int(18 * hr_mm // 5), 9)
    assert sidecar["slice_thickness_mm"] == 4.0 and sidecar["slice_spacing_mm"] == 5.0
    assert sidecar["axis"] == 1 and sidecar["noise"] == "gaussian" and sidecar["noise_level"] == 2.0
    assert sidecar["seed"] == 7 and sidecar["profile"] == "gaussian"
    assert sidecar["lr_shape"] == list(img.shape)
    np.testing.assert_allclose(sidecar["lr_spacing"], geometry.voxel_sizes(img.affine), rtol=1e-6)
    np.testing.assert_allclose(img.affine, sidecar["lr_affine"], atol=1e-4)
    assert sidecar["input"] == str(oblique_nifti.resolve()) and "medsr_version" in sidecar


@pytest.mark.parametrize(
    "args",
    [["--thickness", "-3"], ["--thickness", "4", "--noise", "rician"], ["--thickness", "4", "--axis", "Q"]],
)
def test_cli_bad_value_exits_2_without_output(oblique_nifti: Path, args: list[str]) -> None:
    from medsr.cli.main import app

    result = CliRunner().invoke(app, ["simulate", str(oblique_nifti), *args])
    assert result.exit_code == 2, result.output
    assert sorted(p.name for p in oblique_nifti.parent.iterdir()) == ["oblique.nii.gz"]


def test_cli_refuses_existing_sidecar_before_writing(oblique_nifti: Path) -> None:
    from medsr.cli.main import app

    oblique_nifti.with_name("oblique_lr.json").write_text("{}")
    result = CliRunner().invoke(app, ["simulate", str(oblique_nifti), "--thickness", "8"])
    assert result.exit_code == 2
    assert not oblique_nifti.with_name("oblique_lr.nii.gz").exists()


def test_real_scan_mni152(mni_path: Path) -> None:
    """nilearn's 1 mm MNI152 T1 to 5 mm axial slices: shape, grid and mean signal."""
    from medsr.io.readers import load_volume

    hr = load_volume(mni_path)
    lr = simulate_thick_slices(hr, 5.0, axis="S")
    n_hr = hr.shape[-1]
    assert lr.shape[-1] == n_hr // 5
    assert lr.mean().item() == pytest.approx(hr[..., : 5 * (n_hr // 5)].mean().item(), rel=0.005)
    noisy = simulate_thick_slices(hr, 5.0, axis="S", noise="rician:30", rng=0)
    sim = noisy.meta["simulation"]
    assert sim["axis_direction"] == "S"
    assert sim["noise_sigma"] == pytest.approx(foreground_signal(lr) / 30, rel=1e-6)
    background = noisy[lr == 0]  # air outside the head: Rayleigh-distributed magnitude
    assert background.mean().item() == pytest.approx(sim["noise_sigma"] * np.sqrt(np.pi / 2), rel=0.05)


def test_docs_figure_is_made_by_the_script_in_the_repo(tmp_path: Path) -> None:
    import runpy

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "simulation.md").read_text()
    assert "figures/simulation_model.png" in doc and "make_simulation_figure.py" in doc
    assert (root / "docs" / "figures" / "simulation_model.png").is_file()
    script = runpy.run_path(str(root / "docs" / "figures" / "make_simulation_figure.py"))
    out = script["main"](tmp_path / "figure.png")
    assert out.stat().st_size > 10_000


def _write_dicom_series(folder: Path, spacing=(0.8, 0.7, 1.0), n=12) -> sitk.Image:
    """An axial-ish oblique MR series written slice by slice with SimpleITK (LPS geometry)."""
    rng = np.random.default_rng(4)
    image = sitk.GetImageFromArray(rng.uniform(0, 100, size=(n, 10, 9)).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin((12.0, -30.0, 5.0))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c))
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    row, col = image.GetDirection()[0::3], image.GetDirection()[1::3]
    for i in range(n):
        sl = image[:, :, i]
        tags = {
            "0008|0060": "MR",
            "0020|000d": "1.2.826.0.1.3680043.8.498.1",
            "0020|000e": "1.2.826.0.1.3680043.8.498.2",
            "0008|0018": f"1.2.826.0.1.3680043.8.498.3.{i + 1}",
            "0020|0013": str(i + 1),
            "0018|0050": "1.0",
            "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, i))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*row, *col)),
        }
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{i:03d}.dcm"))
        writer.Execute(sl)
    return image


def test_cli_dicom_series_in_dicom_series_out(tmp_path: Path) -> None:
    from medsr.cli.main import app

    hr = _write_dicom_series(tmp_path / "series")
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "series"), "--thickness", "3"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "series_lr"
    assert out.is_dir() and (tmp_path / "series_lr.json").is_file()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    lr = reader.Execute()
    assert lr.GetSize() == (9, 10, 4)
    for k in range(4):  # LR slice k at the LPS position of HR index 3k + 1
        expected = hr.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, 3.0 * k + 1.0))
        np.testing.assert_allclose(lr.TransformIndexToPhysicalPoint((0, 0, k)), expected, atol=1e-3)
