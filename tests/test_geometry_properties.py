"""Property-based checks of the grid conventions: any affine, any factor."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.affines import apply_affine

from medsr import geometry
from tests.helpers.volumes import random_rotation

spacings = st.tuples(*[st.floats(0.2, 8.0) for _ in range(3)])
flips = st.tuples(*[st.sampled_from([-1.0, 1.0]) for _ in range(3)])
shapes = st.tuples(*[st.integers(1, 60) for _ in range(3)])


@st.composite
def affines(draw) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    affine = np.eye(4)
    rot = random_rotation(rng, max_angle_deg=draw(st.floats(0, 90)))
    affine[:3, :3] = rot @ np.diag(np.array(draw(spacings)) * np.array(draw(flips)))
    affine[:3, 3] = draw(st.tuples(*[st.floats(-500, 500) for _ in range(3)]))
    return affine


@settings(max_examples=150, deadline=None)
@given(affine=affines(), shape=shapes, axis=st.integers(0, 2), factor=st.floats(1.01, 12.0))
def test_upscaling_preserves_extent_for_any_affine(affine, shape, axis, factor) -> None:
    out_shape, out_affine = geometry.upscaled_grid(shape, affine, axis, factor)
    assert out_shape[axis] == max(1, round(shape[axis] * factor))
    np.testing.assert_allclose(
        geometry.extent_corners(out_shape, out_affine),
        geometry.extent_corners(shape, affine),
        atol=1e-6 * 1000,
    )
    # Every output voxel maps to the input index the convention gives.
    i = np.arange(out_shape[axis], dtype=float)
    idx_out = np.zeros((i.size, 3))
    idx_out[:, axis] = i
    idx_in = np.zeros((i.size, 3))
    idx_in[:, axis] = geometry.output_to_input_index(i, shape[axis], out_shape[axis])
    np.testing.assert_allclose(apply_affine(out_affine, idx_out), apply_affine(affine, idx_in), atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(affine=affines(), shape=shapes, axis=st.integers(0, 2), ratio=st.integers(1, 8))
def test_simulated_grid_upscaled_back_is_the_hr_grid(affine, shape, axis, ratio) -> None:
    shape = tuple(n * ratio if a == axis else n for a, n in enumerate(shape))
    lr_shape, lr_affine = geometry.slab_grid(shape, affine, axis, float(ratio))
    up_shape, up_affine = geometry.upscaled_grid(lr_shape, lr_affine, axis, float(ratio))
    assert up_shape == tuple(shape)
    np.testing.assert_allclose(up_affine, affine, atol=1e-9 * max(1.0, np.abs(affine).max()))


@settings(max_examples=100, deadline=None)
@given(affine=affines())
def test_orientation_and_axis_lookup_agree(affine) -> None:
    codes = geometry.orientation_codes(affine)
    for axis, letter in enumerate(codes):
        found = geometry.axis_from_direction(affine, letter)
        # The axis named by a letter points closest to that world direction (ties allowed on 45 degree obliques).
        cos_found = abs(affine["RLAPSI".index(letter) // 2, found]) / np.linalg.norm(affine[:3, found])
        cos_axis = abs(affine["RLAPSI".index(letter) // 2, axis]) / np.linalg.norm(affine[:3, axis])
        assert cos_found >= cos_axis - 1e-12
