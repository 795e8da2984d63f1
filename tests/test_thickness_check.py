"""The slice-thickness check for scans whose thickness is unknown: thin slices with gaps are recognised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsr import geometry
from medsr.inference.predict import upscale
from medsr.inference.selfsup.config import config_with
from medsr.inference.selfsup.pipeline import intensity_range
from medsr.inference.selfsup.thickness import checked_profile, estimate_thickness, looks_thin
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of, make_volume
from medsr.transforms.array import simulate_thick_slices
from tests.helpers.volumes import make_affine, slice_profile

TINY = config_with(features=16, blocks=2, batch=8, patch=(8, 24))


def texture_volume(shape=(84, 104, 96), spacing=(1.0, 0.8, 1.0), seed=0):
    """An isotropic random texture (smoothed noise, 1.5 mm correlation) on an oblique grid."""
    rng = np.random.default_rng(seed)
    sigma = [1.5 / s for s in spacing]
    data = ndimage.gaussian_filter(rng.normal(size=shape), sigma) * 100 + 500
    return make_volume(data.astype(np.float32), make_affine(spacing, rng=np.random.default_rng(seed + 1)))


def estimate(lr) -> float | None:
    data = lr.as_tensor()[0].float()
    lo, hi = intensity_range(data, (0.5, 99.5))
    sizes = geometry.voxel_sizes(affine_of(lr))
    return estimate_thickness((data - lo) / (hi - lo), 2, sizes, "gaussian")


@pytest.mark.parametrize(
    "thickness,thin", [(5.0, False), (4.0, False), (3.0, False), (2.0, True), (1.0, True)]
)
def test_texture_slices_are_told_apart_by_thickness(thickness: float, thin: bool) -> None:
    lr = simulate_thick_slices(texture_volume(), thickness, 4.0, axis=2, profile="gaussian")
    found = estimate(lr)
    assert found is not None and looks_thin(found, 4.0) is thin
    if thickness >= 2.0:
        assert found == pytest.approx(thickness, rel=0.35)
    else:  # blur finer than the texture itself cannot be measured: it only has to look thin
        assert found <= thickness + 0.5


@pytest.mark.parametrize("thickness,thin", [(4.0, False), (1.0, True)])
def test_real_t1_thin_slices_with_gaps_are_recognised(mni_path, thickness: float, thin: bool) -> None:
    hr = load_volume(mni_path)
    lr = simulate_thick_slices(hr, thickness, 4.0, axis="S", profile="gaussian")
    assert geometry.resolve_axis(affine_of(lr), "S") == 2
    assert looks_thin(estimate(lr), 4.0) is thin


def test_too_few_slices_or_too_small_slices_give_no_estimate() -> None:
    sizes = np.array([1.0, 1.0, 4.0])
    assert estimate_thickness(torch.rand(100, 100, 19), 2, sizes, "gaussian") is None  # 19 slices
    assert estimate_thickness(torch.rand(100, 79, 30), 2, sizes, "gaussian") is None  # 79 mm < 20 spacings
    assert estimate_thickness(torch.rand(100, 80, 20), 2, sizes, "gaussian") is not None
    assert not looks_thin(None, 4.0)


def test_the_check_refines_an_unknown_thickness_into_a_new_slice_profile() -> None:
    """checked_profile returns a new SliceProfile whose facts are what the sidecar records; the first stays."""
    gapped = simulate_thick_slices(texture_volume(), 1.0, 4.0, axis=2, profile="gaussian")
    gapped.meta.pop("slice_thickness")  # as read from a NIfTI file without a sidecar
    unknown = slice_profile(gapped, 2)
    assert not unknown.thickness_known and "thickness_estimate_mm" not in unknown.facts()
    data = gapped.as_tensor()[0].float()
    lo, hi = intensity_range(data, (0.5, 99.5))
    sizes = geometry.voxel_sizes(affine_of(gapped))
    thin = checked_profile(unknown, (data - lo) / (hi - lo), 2, sizes, "gaussian", 0.0)
    assert thin.thickness_mm < 2.0 and thin.thickness_source.startswith("estimated from the scan")
    assert list(thin.facts()) == [*unknown.facts(), "thickness_estimate_mm"]
    assert thin.facts()["thickness_estimate_mm"] == round(thin.thickness_mm, 3)
    assert unknown.thickness_mm == pytest.approx(4.0) and unknown.thickness_source == "slice spacing"
    small = checked_profile(unknown, torch.rand(100, 100, 19), 2, np.array([1.0, 1.0, 4.0]), "gaussian", 0.0)
    assert small.facts() == {**unknown.facts(), "thickness_estimate_mm": None}  # too few slices to tell


@pytest.mark.slow
def test_selfsup_uses_the_estimate_only_when_nothing_is_known() -> None:
    kwargs = {"factor": 4, "method": "selfsup", "steps": 2, "progress": False, "config": TINY}
    gapped = simulate_thick_slices(texture_volume(), 1.0, 4.0, axis=2, profile="gaussian")
    gapped.meta.pop("slice_thickness")  # as read from a NIfTI file without a sidecar
    facts = upscale(gapped, **kwargs).meta["medsr"]
    assert facts["thickness_source"].startswith("estimated from the scan")
    assert facts["thickness_mm"] == pytest.approx(facts["thickness_estimate_mm"], abs=1e-3)
    assert facts["thickness_mm"] < 2.0
    contiguous = simulate_thick_slices(texture_volume(), 4.0, 4.0, axis=2, profile="gaussian")
    contiguous.meta.pop("slice_thickness")
    facts = upscale(contiguous, **kwargs).meta["medsr"]
    assert facts["thickness_source"] == "slice spacing" and facts["thickness_mm"] == pytest.approx(4.0)
    assert facts["thickness_estimate_mm"] > 2.0
    told = upscale(gapped, thickness=4.0, **kwargs).meta["medsr"]  # the user's word stands
    assert told["thickness_mm"] == 4.0 and told["thickness_source"] == "given"
    assert "thickness_estimate_mm" not in told
