"""Self-supervised upscaling: geometry, determinism, learning, model round trip, units, memory tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nibabel.affines import apply_affine

import medsr
from medsr import geometry
from medsr.errors import MedsrError
from medsr.inference.interpolate import interpolate_upscale
from medsr.inference.predict import upscale
from medsr.inference.selfsup.apply import batch_plan, upscale_volume
from medsr.inference.selfsup.config import config_with
from medsr.inference.selfsup.noise import estimate_noise, input_noise
from medsr.inference.selfsup.pairs import make_stacks
from medsr.inference.selfsup.pipeline import selfsup_upscale
from medsr.inference.selfsup.sampler import PatchSampler
from medsr.io.volume import affine_of, make_volume
from medsr.models import MODELS, SliceSR2d
from medsr.runtime.checkpoint import read_meta
from medsr.transforms.array import simulate_thick_slices
from medsr.transforms.functional import apply_slab_weights, slab_weights
from tests.helpers.volumes import DEVICES, blob_volume, make_affine, slice_profile

#: A small network so that each test trains in seconds (same class and code path as the default).
TINY = config_with(features=16, blocks=2, batch=8, patch=(8, 24))


def small_volume(shape=(22, 18, 7), spacing=(0.9, 1.1, 3.0), flips=(-1, 1, 1), seed=3):
    affine = make_affine(spacing, rng=np.random.default_rng(seed), flips=flips)
    return make_volume(blob_volume(shape, np.random.default_rng(seed)), affine)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis,factor", [(2, 3.0), (0, 2.5)])
def test_output_grid_follows_the_convention_in_world_coordinates(
    axis: int, factor: float, device: str
) -> None:
    vol = small_volume(spacing=(3.0, 1.1, 3.0) if axis == 0 else (0.9, 1.1, 3.0))
    out, facts = selfsup_upscale(
        vol,
        axis=axis,
        factor=factor,
        slice_profile=slice_profile(vol, axis),
        steps=3,
        progress=False,
        device=device,
        config=TINY,
    )
    n_in = vol.shape[1 + axis]
    n_out = int(round(n_in * factor))
    expected_shape = list(vol.shape[1:])
    expected_shape[axis] = n_out
    assert tuple(out.shape) == (1, *expected_shape)
    a_in, a_out = affine_of(vol), affine_of(out)
    idx = np.zeros((n_out, 3))
    idx[:, axis] = np.arange(n_out)
    idx[:, (axis + 1) % 3] = 5
    src = idx.copy()
    src[:, axis] = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    np.testing.assert_allclose(apply_affine(a_out, idx), apply_affine(a_in, src), atol=1e-9)
    np.testing.assert_allclose(  # same physical extent
        np.sort(geometry.extent_corners(out.shape, a_out), 0),
        np.sort(geometry.extent_corners(vol.shape, a_in), 0),
    )
    assert facts["effective_factor"] == pytest.approx(n_out / n_in)
    assert facts["network_factor"] == int(np.ceil(factor))
    assert out.dtype == torch.float32 and np.isfinite(out.numpy()).all()


@pytest.mark.slow
def test_non_integer_factor_shape_matches_upscaled_grid() -> None:
    vol = small_volume(shape=(20, 16, 9))
    out, facts = selfsup_upscale(
        vol, axis=2, factor=7.14, slice_profile=slice_profile(vol, 2), steps=2, progress=False, config=TINY
    )
    shape, affine = geometry.upscaled_grid((20, 16, 9), affine_of(vol), 2, 7.14)
    assert tuple(out.shape[1:]) == shape == (20, 16, round(9 * 7.14))
    np.testing.assert_allclose(affine_of(out), affine)
    assert facts["network_factor"] == 8


@pytest.mark.slow
def test_same_seed_same_result_other_seed_differs() -> None:
    vol = small_volume()
    profile = slice_profile(vol, 2)
    a, b, c = (
        selfsup_upscale(
            vol, axis=2, factor=3, slice_profile=profile, steps=15, seed=seed, progress=False, config=TINY
        )[0]
        for seed in (5, 5, 6)
    )
    assert torch.equal(a.as_tensor(), b.as_tensor())
    assert not torch.equal(a.as_tensor(), c.as_tensor())


def _sharp_phantom() -> np.ndarray:
    """Boxes and slabs with sharp edges at many positions and orientations (1 mm isotropic)."""
    rng = np.random.default_rng(11)
    x, y, z = np.meshgrid(*[np.arange(40)] * 3, indexing="ij")
    vol = np.zeros((40, 40, 40), np.float32)
    for _ in range(14):
        c, r = rng.uniform(6, 34, 3), rng.uniform(2, 9, 3)
        normal = rng.normal(size=3)
        plane = (x - c[0]) * normal[0] + (y - c[1]) * normal[1] + (z - c[2]) * normal[2] > 0
        box = (abs(x - c[0]) < r[0]) & (abs(y - c[1]) < r[1]) & (abs(z - c[2]) < r[2])
        vol[box & plane] += rng.uniform(40, 100)
    return vol


@pytest.mark.slow
def test_learned_model_beats_cubic_on_sharp_edges() -> None:
    hr = make_volume(_sharp_phantom(), make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(2)))
    lr = simulate_thick_slices(hr, 4.0, 4.0, axis=2)
    out, _ = selfsup_upscale(
        lr,
        axis=2,
        factor=4,
        slice_profile=slice_profile(lr, 2),
        steps=300,
        progress=False,
        config=config_with(features=24, blocks=2),
    )
    cubic = interpolate_upscale(lr, 2, 4, "bspline")
    truth = hr.numpy()[0]

    def mse(v):
        return float(np.mean((v.numpy()[0] - truth) ** 2))

    assert mse(out) < 0.8 * mse(cubic), (mse(out), mse(cubic))


@pytest.mark.slow
def test_noise_matching_keeps_noise_from_being_amplified() -> None:
    truth = _sharp_phantom()
    hr = make_volume(truth, make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(5)))
    lr = simulate_thick_slices(hr, 4.0, 4.0, axis=2, noise="gaussian:8", rng=1)  # acquired-slice noise

    def mse(match: bool) -> float:
        cfg = config_with(features=24, blocks=2, match_noise=match)
        out, facts = selfsup_upscale(
            lr, axis=2, factor=4, slice_profile=slice_profile(lr, 2), steps=300, progress=False, config=cfg
        )
        assert (facts["training_input_noise_std"] > 0) == match
        return float(np.mean((out.numpy()[0] - truth) ** 2))

    matched, unmatched = mse(True), mse(False)
    assert matched < 0.9 * unmatched, (matched, unmatched)


@pytest.mark.slow
def test_the_slice_profile_shape_must_match_the_scan() -> None:
    """Thick slices that average thin ones (boxcar): told so, medsr beats cubic; told Gaussian, it over-sharpens.

    A 64 x 64 x 48 mm block of the bundled real T1 (the demo scan), 4 mm boxcar slabs, x4.
    """
    from medsr.io.readers import load_volume

    brain = load_volume(Path(medsr.__file__).parent / "data" / "mni152_2009a_t1_1mm_crop.nii.gz")
    truth = np.ascontiguousarray(brain.numpy()[0, 44:108, 60:124, 56:104])
    hr = make_volume(truth, make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(6)))
    lr = simulate_thick_slices(hr, 4.0, 4.0, axis=2, profile="boxcar")
    cfg = config_with(blocks=2)

    def mse(volume) -> float:  # the end slabs have no neighbour on one side: left out
        return float(np.mean((volume.numpy()[0] - truth)[..., 4:-4] ** 2))

    def told(profile: str) -> float:
        out, facts = selfsup_upscale(
            lr,
            axis=2,
            factor=4,
            slice_profile=slice_profile(lr, 2, shape=profile),
            steps=300,
            progress=False,
            config=cfg,
        )
        assert facts["profile"] == profile
        return mse(out)

    boxcar, gaussian, cubic = told("boxcar"), told("gaussian"), mse(interpolate_upscale(lr, 2, 4, "bspline"))
    assert boxcar < 0.9 * gaussian and boxcar < 0.9 * cubic, (boxcar, gaussian, cubic)
    # Not knowing the shape ("mixed": pairs of both) is far safer than assuming the wrong one.
    mixed = told("mixed")
    assert mixed < 0.9 * gaussian and mixed < 0.9 * cubic, (mixed, gaussian, cubic)


@pytest.mark.slow
def test_save_and_reuse_model_round_trip(tmp_path) -> None:
    vol = small_volume()
    path = tmp_path / "net.safetensors"
    a, facts = selfsup_upscale(
        vol,
        axis=2,
        factor=3,
        slice_profile=slice_profile(vol, 2),
        steps=10,
        progress=False,
        save_model=path,
        config=TINY,
    )
    assert path.is_file() and not path.with_suffix(".json").exists()  # one self-describing file
    assert read_meta(path)["kind"] == "selfsup" and read_meta(path)["network_factor"] == 3
    assert facts["model_saved"] == str(path)
    b, facts_b = selfsup_upscale(
        vol, axis=2, factor=3, slice_profile=slice_profile(vol, 2), model=path, progress=False
    )
    assert facts_b["steps"] == 0 and facts_b["model_loaded"] == str(path)
    torch.testing.assert_close(a.as_tensor(), b.as_tensor(), rtol=0, atol=1e-5)
    # medsr.upscale(model=...) recognises a per-scan network and reuses it without training.
    c = upscale(vol, axis=2, factor=3, model=path, progress=False)
    assert c.meta["medsr"]["method"] == "selfsup" and c.meta["medsr"]["steps"] == 0
    torch.testing.assert_close(a.as_tensor(), c.as_tensor(), rtol=0, atol=1e-5)
    with pytest.raises(MedsrError, match="factor"):
        selfsup_upscale(
            vol, axis=2, factor=2, slice_profile=slice_profile(vol, 2), model=path, progress=False
        )
    with pytest.raises(MedsrError, match="thickness"):
        selfsup_upscale(
            vol,
            axis=2,
            factor=3,
            slice_profile=slice_profile(vol, 2, thickness=6.0),
            model=path,
            progress=False,
        )
    # The stored profile travels with the model; asking for another one is refused.
    boxcar = tmp_path / "boxcar.safetensors"
    selfsup_upscale(
        vol,
        axis=2,
        factor=3,
        slice_profile=slice_profile(vol, 2, shape="boxcar"),
        steps=2,
        save_model=boxcar,
        progress=False,
        config=TINY,
    )
    _, reused = selfsup_upscale(
        vol, axis=2, factor=3, slice_profile=slice_profile(vol, 2), model=boxcar, progress=False
    )
    assert reused["profile"] == "boxcar" and facts_b["profile"] == "gaussian"
    with pytest.raises(MedsrError, match="boxcar slice profiles, not gaussian"):
        selfsup_upscale(
            vol,
            axis=2,
            factor=3,
            slice_profile=slice_profile(vol, 2, shape="gaussian"),
            model=boxcar,
            progress=False,
        )


@pytest.mark.slow
def test_hounsfield_units_come_back_unclipped() -> None:
    data = np.full((24, 24, 8), -1000.0, np.float32)
    data[4:20, 4:20, 1:7] = 40.0
    data[8:16, 8:16, 2:6] = 3000.0
    vol = make_volume(data, make_affine((0.7, 0.7, 5.0), rng=np.random.default_rng(4)))
    out, facts = selfsup_upscale(
        vol, axis=2, factor=5, slice_profile=slice_profile(vol, 2), steps=20, progress=False, config=TINY
    )
    values = out.numpy()
    assert values.min() < -950 and values.max() > 2800
    assert facts["intensity_range"][0] == pytest.approx(-1000.0)
    # Air stays air: 20 steps of a tiny network leave the corner 15-17 HU off (seeds 0-2), not "a few HU"
    assert np.abs(values[0, 0, 0, :] + 1000).max() < 25


def test_training_pairs_follow_the_slice_physics() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0, 1, (3, 40, 30)).astype(np.float32))
    (boxcar,) = make_stacks(images, 1.0, 4, 4.0, 4.0, phases=False, profile="boxcar")
    torch.testing.assert_close(boxcar.lr, images.reshape(3, 10, 4, 30).mean(2))  # 4 mm slab = mean of 4 rows
    gaussian, box = make_stacks(images, 1.0, 4, 4.0, 4.0, phases=False, profile="mixed")  # both shapes
    torch.testing.assert_close(box.lr, boxcar.lr)
    torch.testing.assert_close(
        gaussian.lr, apply_slab_weights(images, slab_weights(40, 1.0, 4.0, 4.0), axis=1)
    )
    assert gaussian.hr is box.hr  # one HR copy for both
    stacks = make_stacks(images, 1.0, 4, 4.0, 4.0, phases=True)
    assert [s.offset for s in stacks] == [0, 1, 2, 3]
    weights = slab_weights(40, 1.0, 4.0, 4.0)
    torch.testing.assert_close(stacks[0].lr, apply_slab_weights(images, weights, axis=1))
    weights = slab_weights(38, 1.0, 4.0, 4.0)  # phase 2: slab 0 starts at HR row 2
    torch.testing.assert_close(stacks[2].lr, apply_slab_weights(images[:, 2:], weights, axis=1))
    sampler = PatchSampler(stacks, (6, 12), 0.5, True, torch.Generator().manual_seed(0))
    lr, hr = sampler.sample(16)
    assert lr.shape == (16, 1, 6, 12) and hr.shape == (16, 1, 24, 12)
    # Each HR patch degraded with a boxcar of 4 rows must resemble its LR patch (same place, same flips).
    box = hr[:, 0].reshape(16, 6, 4, 12).mean(2)
    assert torch.corrcoef(torch.stack([box.flatten(), lr[:, 0].flatten()]))[0, 1] > 0.8


def test_resampled_in_plane_rows_for_non_integer_factor() -> None:
    images = torch.rand(2, 30, 10)
    (stack,) = make_stacks(images, 1.0, 3, 2.5, 2.5, phases=False)  # HR rows resampled to 2.5/3 mm
    assert stack.hr.shape[1] == 36 and stack.lr.shape[1] == 12


def test_noise_estimate_and_training_input_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.2, 0.8, 64)[None, :, None].expand(6, 64, 48)  # smooth signal, zero Laplacian
    noisy = ramp + 0.03 * torch.randn(ramp.shape, generator=gen)
    assert estimate_noise(noisy) == pytest.approx(0.03, rel=0.1)
    assert estimate_noise(ramp.contiguous()) < 1e-4
    background = torch.zeros(6, 64, 48)  # exact-zero background (skull-stripped, masked) is left out
    background[:, 16:48, 12:36] = noisy[:, 16:48, 12:36]
    assert estimate_noise(background) == pytest.approx(0.03, rel=0.15)
    # A thick slice averaging R thin ones keeps sigma * |w|; the rest is added to the training inputs.
    weights = slab_weights(32, 1.0, 4.0, 4.0, "gaussian")
    kept = float(np.sqrt(np.median((weights**2).sum(1))))
    assert input_noise(0.03, 4, 4.0, 4.0) == pytest.approx(0.03 * np.sqrt(1 - kept**2))
    assert 0 < input_noise(0.03, 4, 4.0, 4.0) < 0.03 and input_noise(0.0, 4, 4.0, 4.0) == 0.0
    assert input_noise(0.03, 4, 4.0, 4.0, "boxcar") == pytest.approx(0.03 * np.sqrt(1 - 1 / 4))  # mean of 4
    mean_energy = (kept**2 + 1 / 4) / 2  # "mixed": one level from the mean of both shapes' energies
    assert input_noise(0.03, 4, 4.0, 4.0, "mixed") == pytest.approx(0.03 * np.sqrt(1 - mean_energy))


@pytest.mark.parametrize("expand,fold", [(1, 1), (4, 1), (4, 2), (1, 3)])
def test_tiled_inference_equals_whole_planes(expand: int, fold: int) -> None:
    torch.manual_seed(0)
    net = SliceSR2d(3, features=8, blocks=2, expand=expand, fold=fold)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    vol = torch.rand(9, 30, 6)
    whole = upscale_volume(net, vol, 2, 18, torch.empty(9, 30, 18), device=torch.device("cpu"))
    tiled = upscale_volume(
        net, vol, 2, 18, torch.empty(9, 30, 18), device=torch.device("cpu"), batch_bytes=4000
    )
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-5)


def test_inference_batches_budget_the_expanded_activations() -> None:
    plain, wide = SliceSR2d(4, features=16, expand=1), SliceSR2d(4, features=16, expand=4)
    batch_plain, _ = batch_plan(plain, 47, 233, 256 * 2**20)
    batch_wide, _ = batch_plan(wide, 47, 233, 256 * 2**20)
    assert batch_wide < batch_plain  # four times wider ReLU activations: fewer planes per batch
    # A plane too large for the budget is tiled along its width instead.
    planes, tile = batch_plan(wide, 300, 4096, 64 * 2**20)
    assert planes == 1 and tile is not None and 8 <= tile < 4096


@pytest.mark.parametrize("grid", ["lr", "hr"])
def test_network_shapes_and_identity_start(grid: str) -> None:
    net = MODELS["slice_sr2d"](4, features=8, blocks=1, grid=grid)
    x = torch.rand(2, 1, 5, 7)
    y = net(x)
    assert y.shape == (2, 1, 20, 7)
    expected = torch.nn.functional.interpolate(x, size=(20, 7), mode="bicubic", align_corners=False)
    torch.testing.assert_close(y, expected)  # zero-initialised tail: starts as cubic interpolation


def test_user_errors_are_medsr_errors() -> None:
    vol = small_volume()
    with pytest.raises(MedsrError, match="factor"):
        selfsup_upscale(vol, axis=2, factor=0.5, slice_profile=slice_profile(vol, 2), steps=1, progress=False)
    with pytest.raises(MedsrError, match="axis"):
        selfsup_upscale(vol, axis=3, factor=2, slice_profile=slice_profile(vol, 2), steps=1, progress=False)
    two = make_volume(np.zeros((2, 8, 8, 4), np.float32), np.eye(4))
    with pytest.raises(MedsrError, match="one 3-D volume"):
        selfsup_upscale(two, axis=2, factor=2, slice_profile=slice_profile(two, 2), steps=1, progress=False)
    with pytest.raises(MedsrError, match="device"):
        selfsup_upscale(
            vol, axis=2, factor=2, slice_profile=slice_profile(vol, 2), steps=1, progress=False, device="tpu9"
        )
    with pytest.raises(MedsrError, match="not one of gaussian, boxcar, mixed"):
        selfsup_upscale(
            vol,
            axis=2,
            factor=2,
            slice_profile=slice_profile(vol, 2, shape="cosine"),
            steps=1,
            progress=False,
        )
    with pytest.raises(MedsrError, match="not one of gaussian, boxcar"):  # a slab has one shape
        simulate_thick_slices(vol, 4.0, 4.0, axis=2, profile="mixed")
    with pytest.raises(MedsrError, match="only shapes selfsup"):
        upscale(vol, axis=2, factor=2, method="bspline", profile="boxcar")
