"""Thick-slice simulation on MetaTensors: the function, the MONAI array transforms built on it.

``simulate_thick_slices`` integrates the slice profile over each HR slice (functional.slab_weights),
contracts the slice axis with those weights, puts the result on the coarse grid of geometry.slab_grid
(each LR slice at its physical centre) and optionally adds acquisition noise (noise.py). See
docs/simulation.md for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Randomizable, RandomizableTransform, Transform
from monai.utils import TransformBackends

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of, with_grid
from medsr.transforms import functional as F
from medsr.transforms.noise import NoiseModel, RandomSource, add_noise, parse_noise

AxisSpec = int | str | None


def default_axis(affine: np.ndarray) -> int:
    """The thick axis of an anisotropic volume, else the array axis closest to world S (axial slices)."""
    try:
        return geometry.through_plane_axis(affine)
    except MedsrError:
        return geometry.axis_from_direction(affine, "S")


def simulate_thick_slices(
    volume: MetaTensor,
    slice_thickness: float | None,
    slice_spacing: float | None = None,
    axis: AxisSpec = None,
    profile: F.Profile = "gaussian",
    noise: str | NoiseModel | None = None,
    *,
    kernel_step: float | None = None,
    rng: RandomSource = None,
) -> MetaTensor:
    """Simulate a thick-slice acquisition of ``volume`` (C, X, Y, Z) along one axis.

    Args:
        volume: HR MetaTensor with ``meta["affine"]``.
        slice_thickness: FWHM of the slice profile, mm. For a user kernel it is the nominal thickness
            recorded in the metadata; None there means the kernel's own FWHM.
        slice_spacing: centre-to-centre LR spacing, mm (default: the thickness, contiguous slices);
            larger than the thickness is a gap, smaller an overlap. Must be >= the HR spacing.
        axis: 0, 1, 2, a world letter (R/L/A/P/S/I: the closest array axis), or None (the thickest axis
            of an anisotropic volume, else the axis closest to S).
        profile: ``"gaussian"``, ``"boxcar"`` or a 1-D kernel sampled every ``kernel_step`` mm.
        noise: None, a NoiseModel, or ``"gaussian:SIGMA"`` / ``"rician:SNR"`` (see noise.py).
        rng: seeds the noise draws (a MONAI transform passes its ``self.R``).

    Returns:
        The LR MetaTensor (C, X', Y', Z') on its own grid (``floor(n * hr_spacing / slice_spacing)``
        slices, affine from geometry.slab_grid), with ``meta["slice_thickness"]`` (mm) and
        ``meta["simulation"]`` (a flat dict describing the simulation).
    """
    noise_model = parse_noise(noise)
    affine = affine_of(volume)
    ax = default_axis(affine) if axis is None else geometry.resolve_axis(affine, axis)
    hr_spacing = float(geometry.voxel_sizes(affine)[ax])
    fwhm = F.profile_fwhm(profile, slice_thickness, kernel_step)
    thickness = fwhm if slice_thickness is None else float(slice_thickness)
    spacing = thickness if slice_spacing is None else float(slice_spacing)
    if not (np.isfinite(spacing) and spacing >= hr_spacing * (1.0 - 1e-6)):
        raise MedsrError(
            f"slice spacing {spacing:g} mm is finer than the volume's {hr_spacing:g} mm along axis {ax}; "
            "thick slices need a spacing at least as large as the HR spacing"
        )
    if volume.ndim not in (3, 4):
        raise MedsrError(f"expected a (C, X, Y, Z) volume, got shape {tuple(volume.shape)}")
    data_axis = volume.ndim - 3 + ax
    weights = F.slab_weights(volume.shape[data_axis], hr_spacing, thickness, spacing, profile, kernel_step)
    _, lr_affine = geometry.slab_grid(tuple(volume.shape), affine, ax, spacing / hr_spacing)
    hr = volume.as_subclass(torch.Tensor)
    data = F.apply_slab_weights(hr if hr.is_floating_point() else hr.float(), weights, data_axis)
    sigma = 0.0
    if noise_model is not None:
        data, sigma = add_noise(data, noise_model, rng)
    description = {
        "axis": ax,
        "axis_direction": geometry.orientation_codes(affine)[ax],
        "slice_thickness_mm": thickness,
        "slice_spacing_mm": spacing,
        "gap_mm": spacing - thickness,
        "hr_spacing_mm": hr_spacing,
        "spacing_ratio": spacing / hr_spacing,
        "profile": profile.lower() if isinstance(profile, str) else "kernel",
        "profile_fwhm_mm": fwhm,
        "kernel_step_mm": float(kernel_step) if not isinstance(profile, str) else 0.0,
        "noise": noise_model.kind if noise_model else "none",
        "noise_level": noise_model.level if noise_model else 0.0,
        "noise_sigma": sigma,
    }
    known = {"slice_profile": description["profile"]} if description["profile"] in F.PROFILES else {}
    return with_grid(
        volume, data, lr_affine, slice_thickness=thickness, slice_axis=ax, simulation=description, **known
    )


class SimulateThickSlices(Randomizable, Transform):
    """Array transform: :func:`simulate_thick_slices` with fixed parameters.

    Without noise the output is deterministic; noise draws use ``self.R`` (``set_random_state``).
    It is Randomizable, so MONAI's CacheDataset caches the transforms before it, not its output.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        slice_thickness: float | None,
        slice_spacing: float | None = None,
        axis: AxisSpec = None,
        profile: F.Profile = "gaussian",
        noise: str | NoiseModel | None = None,
        kernel_step: float | None = None,
    ) -> None:
        F.profile_fwhm(profile, slice_thickness, kernel_step)  # fail at construction, not mid-epoch
        self.params: dict[str, Any] = {
            "slice_thickness": slice_thickness,
            "slice_spacing": slice_spacing,
            "axis": axis,
            "profile": profile,
            "noise": parse_noise(noise),
            "kernel_step": kernel_step,
        }

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw up front: the noise is drawn from ``self.R`` in ``__call__``."""

    def __call__(self, img: MetaTensor) -> MetaTensor:
        return simulate_thick_slices(img, **self.params, rng=self.R)


class RandSimulateThickSlices(RandomizableTransform):
    """Array transform drawing the simulation parameters from ranges on each call.

    Args:
        thickness_range: (low, high) mm, or one value; uniform draw of the FWHM.
        spacing_range: (low, high) mm, or one value; None: spacing = the drawn thickness.
        axis: one axis spec (see simulate_thick_slices) or a sequence to draw one from.
        profiles: profiles to draw from (names or user kernels sampled every ``kernel_step`` mm).
        noise: None, ``"gaussian"`` or ``"rician"``; the level (sigma, SNR) is drawn from ``noise_range``.
        noise_prob: probability that a call adds noise.
    """

    backend = SimulateThickSlices.backend

    def __init__(
        self,
        thickness_range: float | Sequence[float],
        spacing_range: float | Sequence[float] | None = None,
        axis: AxisSpec | Sequence[AxisSpec] = None,
        profiles: F.Profile | Sequence[F.Profile] = ("gaussian",),
        noise: str | None = None,
        noise_range: float | Sequence[float] | None = None,
        noise_prob: float = 1.0,
        kernel_step: float | None = None,
    ) -> None:
        super().__init__(prob=1.0)
        self.thickness_range = _as_range(thickness_range, "thickness_range")
        self.spacing_range = None if spacing_range is None else _as_range(spacing_range, "spacing_range")
        self.axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        self.profiles = [profiles] if isinstance(profiles, (str, np.ndarray)) else list(profiles)
        if not self.profiles:
            raise MedsrError("profiles is empty; give at least one of gaussian, boxcar or a kernel")
        for p in self.profiles:
            F.profile_fwhm(p, self.thickness_range[0], kernel_step)
        self.kernel_step = kernel_step
        self.noise_kind = noise
        self.noise_range = None
        if noise is not None:
            if noise_range is None:
                raise MedsrError(f"noise={noise!r} needs noise_range (sigma or SNR, low and high)")
            self.noise_range = _as_range(noise_range, "noise_range")
            NoiseModel(noise, self.noise_range[0])  # type: ignore[arg-type]  # validates the kind
        if not 0.0 <= noise_prob <= 1.0:
            raise MedsrError(f"noise_prob {noise_prob} must lie in [0, 1]")
        self.noise_prob = noise_prob
        self.params: dict[str, Any] = {}

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        thickness = float(self.R.uniform(*self.thickness_range))
        spacing = thickness if self.spacing_range is None else float(self.R.uniform(*self.spacing_range))
        noise = None
        if self.noise_kind is not None and self.noise_range is not None and self.R.rand() < self.noise_prob:
            noise = NoiseModel(self.noise_kind, float(self.R.uniform(*self.noise_range)))  # type: ignore[arg-type]
        self.params = {
            "slice_thickness": thickness,
            "slice_spacing": spacing,
            "axis": self.axes[self.R.randint(len(self.axes))],
            "profile": self.profiles[self.R.randint(len(self.profiles))],
            "noise": noise,
            "kernel_step": self.kernel_step,
        }

    def __call__(self, img: MetaTensor, randomize: bool = True) -> MetaTensor:
        if randomize or not self.params:
            self.randomize()
        return simulate_thick_slices(img, **self.params, rng=self.R)


def _as_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    pair = (value, value) if np.isscalar(value) else tuple(value)  # type: ignore[arg-type]
    lo, hi = (float(pair[0]), float(pair[1])) if len(pair) == 2 else (float("nan"), float("nan"))
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise MedsrError(f"{name} {value!r} must be one positive number or (low, high) with 0 < low <= high")
    return lo, hi
