"""The upscaling and slab conventions of medsr.geometry, checked in world coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.affines import apply_affine

from medsr import geometry
from medsr.errors import MedsrError
from tests.helpers.volumes import make_affine

FACTORS = [2, 3, 4, 2.5, 5 / 0.7]


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_upscaled_grid_keeps_extent_and_slice_centres(factor: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    flips = tuple(int(f) for f in rng.choice([-1, 1], size=3))
    affine = make_affine((0.7, 0.9, 5.0), rng=rng, flips=flips)
    shape = (11, 13, 40)
    out_shape, out_affine = geometry.upscaled_grid(shape, affine, 2, factor)
    assert out_shape == (11, 13, round(40 * factor))
    # Same physical box: the 8 outer corners coincide.
    np.testing.assert_allclose(
        geometry.extent_corners(out_shape, out_affine), geometry.extent_corners(shape, affine), atol=1e-4
    )
    # Output voxel i sits at input index (i + 0.5)/s - 0.5 (s effective), checked in world mm.
    s = out_shape[2] / shape[2]
    i = np.arange(out_shape[2])
    out_world = apply_affine(out_affine, np.stack([np.full_like(i, 3), np.full_like(i, 4), i], axis=1))
    in_world = apply_affine(
        affine, np.stack([np.full(i.size, 3.0), np.full(i.size, 4.0), (i + 0.5) / s - 0.5], 1)
    )
    np.testing.assert_allclose(out_world, in_world, atol=1e-6)
    # In-plane voxel sizes unchanged; slice spacing divided by s.
    np.testing.assert_allclose(geometry.voxel_sizes(out_affine), [0.7, 0.9, 5.0 / s], rtol=1e-12)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_integer_factor_puts_input_centres_between_output_voxels(factor: int) -> None:
    affine = make_affine((1.0, 1.0, 3.0), rng=np.random.default_rng(5))
    _, out_affine = geometry.upscaled_grid((4, 4, 6), affine, 2, factor)
    # Input slice k's centre is the mean of output voxels k*s .. k*s+s-1.
    for k in range(6):
        outs = apply_affine(out_affine, [[1, 1, k * factor + j] for j in range(factor)])
        np.testing.assert_allclose(outs.mean(axis=0), apply_affine(affine, [1, 1, k]), atol=1e-9)


def test_slab_grid_is_inverse_of_upscaling() -> None:
    hr_affine = make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(3), flips=(1, -1, 1))
    lr_shape, lr_affine = geometry.slab_grid((8, 9, 24), hr_affine, 1, 3)
    assert lr_shape == (8, 3, 24)
    up_shape, up_affine = geometry.upscaled_grid(lr_shape, lr_affine, 1, 3)
    assert up_shape == (8, 9, 24)
    np.testing.assert_allclose(up_affine, hr_affine, atol=1e-9)
    np.testing.assert_allclose(geometry.slab_centres(3, 3.0), [1.0, 4.0, 7.0])


def test_slab_grid_non_integer_ratio_keeps_whole_slabs() -> None:
    shape, affine = geometry.slab_grid((4, 4, 11), np.eye(4), 2, 2.5)
    assert shape == (4, 4, 4)
    np.testing.assert_allclose(affine[2, 2], 2.5)
    np.testing.assert_allclose(affine[2, 3], 0.75)  # centre of slab 0 = (2.5 - 1)/2


def test_through_plane_axis_and_directions() -> None:
    affine = make_affine((0.5, 6.0, 0.5), rng=np.random.default_rng(9), oblique=False, flips=(-1, 1, -1))
    assert geometry.through_plane_axis(affine) == 1
    assert geometry.orientation_codes(affine) == "LAI"
    assert geometry.axis_from_direction(affine, "S") == 2
    assert geometry.axis_from_direction(affine, "p") == 1
    assert geometry.resolve_axis(affine, "0") == 0
    with pytest.raises(MedsrError, match="isotropic"):
        geometry.through_plane_axis(np.diag([1.0, 1.0, 1.02, 1.0]))
    with pytest.raises(MedsrError, match="not one of"):
        geometry.resolve_axis(affine, "Q")


def test_axis_from_direction_on_a_permuted_oblique_grid() -> None:
    # Array axis 0 runs mostly superior, axis 2 mostly right.
    rot = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float) @ np.eye(3)
    affine = np.eye(4)
    affine[:3, :3] = make_affine((1, 1, 1), rng=np.random.default_rng(2))[:3, :3] @ rot
    assert geometry.axis_from_direction(affine, "S") == int(np.argmax(np.abs(affine[2, :3])))


@pytest.mark.parametrize("bad", [0, -2, float("nan"), float("inf")])
def test_bad_factor_is_a_user_error(bad: float) -> None:
    with pytest.raises(MedsrError, match="positive"):
        geometry.upscaled_grid((4, 4, 4), np.eye(4), 2, bad)


def test_singular_affine_is_refused() -> None:
    affine = np.eye(4)
    affine[2, 2] = 0.0
    with pytest.raises(MedsrError, match="singular"):
        geometry.as_affine(affine)
