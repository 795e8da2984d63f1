"""Training views of self-supervised upscaling: rotated in-plane slices, padding kept out of the patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medsr.inference.selfsup.pairs as views
from medsr.inference.selfsup.pairs import make_stacks, rotate_slices, training_stacks
from medsr.inference.selfsup.sampler import PatchSampler


def bar_image(shape: tuple[int, int], spacing: tuple[float, float], half_length: float, half_width: float):
    """A bar through the image centre, long along the first axis, sized in mm (pixels ``spacing`` mm)."""
    a = (np.arange(shape[0]) - (shape[0] - 1) / 2) * spacing[0]
    b = (np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing[1]
    aa, bb = np.meshgrid(a, b, indexing="ij")
    return ((np.abs(aa) <= half_length) & (np.abs(bb) <= half_width)).astype(np.float32)


def moments_mm(image: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, float]:
    """Centroid offset from the image centre (mm), principal direction (unit, (A, B)) and its std (mm)."""
    idx = np.argwhere(image > 0.5).astype(float)
    centre = (np.array(image.shape) - 1) / 2
    offset = (idx.mean(0) - centre) * np.array(spacing)
    values, vectors = np.linalg.eigh(np.cov(((idx - centre) * np.array(spacing)).T))
    return offset, vectors[:, -1], float(np.sqrt(values[-1]))


def test_rotation_by_90_degrees_is_exact() -> None:
    image = torch.arange(20.0).reshape(1, 4, 5)
    rotated, valid, pixel = rotate_slices(image, 90.0, (1.0, 1.0))
    torch.testing.assert_close(rotated[0], torch.rot90(image[0], -1))
    assert bool(valid.all()) and pixel == 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 1.5)])
def test_rotation_happens_in_millimetres(spacing: tuple[float, float]) -> None:
    shape = (int(round(60 / spacing[0])), int(round(60 / spacing[1])))  # 60 x 60 mm either way
    bar = bar_image(shape, spacing, half_length=20.0, half_width=3.0)
    rotated, valid, pixel = rotate_slices(torch.from_numpy(bar)[None], 45.0, spacing)
    assert pixel == min(spacing)
    side = 60 * np.sqrt(2) / pixel  # the canvas holds the whole rotated 60 mm square
    assert abs(rotated.shape[1] - side) <= 1 and abs(rotated.shape[2] - side) <= 1
    offset, direction, length = moments_mm(rotated[0].numpy(), (pixel, pixel))
    _, direction_before, length_before = moments_mm(bar, spacing)
    assert abs(direction_before[0]) == pytest.approx(1.0)
    assert np.abs(offset).max() < 1.0  # still centred
    assert abs(abs(direction[0]) - np.sqrt(0.5)) < 0.02 and abs(abs(direction[1]) - np.sqrt(0.5)) < 0.02
    assert length == pytest.approx(length_before, rel=0.03)  # not stretched by the pixel shape
    # Valid pixels: the rotated 60 mm square minus a border of about one source pixel.
    assert 0.85 * 3600 < valid.sum().item() * pixel**2 <= 3600
    corners = valid[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert not bool(corners.any()) and bool(valid[valid.shape[0] // 2, valid.shape[1] // 2])


def test_patches_never_touch_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 48, 40, generator=gen)
    valid = torch.ones(48, 40, dtype=torch.bool)
    valid[20:26, 10:30] = False  # a hole of padding
    images[:, ~valid] = 1e6  # a sentinel that would show in any patch that reached it
    (stack,) = make_stacks(images, 1.0, 4, 4.0, 4.0, phases=False, valid=valid)
    assert stack.valid.shape == stack.lr.shape[1:]
    assert not bool(stack.valid[5, 20]) and not bool(stack.valid[4, 20])  # its slab / a neighbour's tail
    assert bool(stack.valid[0, 20]) and bool(stack.valid[5, 5])
    sampler = PatchSampler([stack], (3, 8), 0.5, True, gen)
    lr, hr = sampler.sample(400)
    assert float(hr.max()) <= 1.0 and float(lr.max()) < 2.0
    # Without the mask the same sampler does draw patches across the hole.
    bare = PatchSampler(make_stacks(images, 1.0, 4, 4.0, 4.0, phases=False), (3, 8), 0.5, True, gen)
    assert float(bare.sample(400)[1].max()) > 1.0


def test_training_stacks_add_rotated_views(monkeypatch: pytest.MonkeyPatch) -> None:
    norm = torch.rand(30, 7, 26)  # slice axis 1, in-plane 30 x 26 voxels of 1.0 x 1.2 mm
    sizes = (1.0, 4.0, 1.2)
    plain = training_stacks(norm, 1, sizes, 4, 4.0, 4.0, "gaussian")
    assert len(plain) == 2 and all(s.valid is None for s in plain)
    assert plain[0].hr.shape[0] == 7 and plain[0].lr.shape[2] == 26 and plain[1].lr.shape[2] == 30
    both = training_stacks(norm, 1, sizes, 4, 4.0, 4.0, "gaussian", rotations=(45.0,))
    assert len(both) == 4 and [s.valid is None for s in both] == [True, False, True, False]
    assert both[1].hr.shape[0] == 7 and both[1].valid.shape == both[1].lr.shape[1:]
    one_axis = training_stacks(
        norm, 1, sizes, 4, 4.0, 4.0, "gaussian", both_axes=False, rotations=(30.0, 60.0)
    )
    assert len(one_axis) == 3
    monkeypatch.setattr(views, "MAX_ROTATED_PIXELS", 3 * 45 * 45)  # room for 3 rotated slices
    capped = training_stacks(norm, 1, sizes, 4, 4.0, 4.0, "gaussian", rotations=(45.0,))
    assert capped[1].hr.shape[0] == 3 and capped[0].hr.shape[0] == 7


def test_training_stacks_keep_evenly_spaced_slices_of_a_large_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training memory is bounded: beyond MAX_SLICE_PIXELS, evenly spaced whole slices are kept."""
    norm = torch.arange(20 * 9 * 12, dtype=torch.float32).reshape(20, 9, 12)  # slice axis 1
    monkeypatch.setattr(views, "MAX_SLICE_PIXELS", 4 * 20 * 12)  # room for 4 slices of 20 x 12
    stacks = training_stacks(norm, 1, (1.0, 4.0, 1.0), 4, 4.0, 4.0, "gaussian")
    rows, cols = stacks
    assert rows.hr.shape == (4, 20, 12) and cols.hr.shape == (4, 12, 20)
    kept = torch.movedim(norm, 1, 0)[[0, 3, 5, 8]]  # first, last and evenly between
    assert torch.equal(rows.hr, kept) and torch.equal(cols.hr, kept.transpose(1, 2))
