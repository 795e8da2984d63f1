"""Self-supervised through-plane super-resolution: learn from the scan itself (SMORE / ECLARE family).

No training set and no pretrained weights. The in-plane axes of a thick-slice scan are high
resolution, so degrading in-plane slices along an in-plane direction with the through-plane slice
profile (Gaussian or boxcar, FWHM = slice thickness, slab spacing = slice spacing) yields (LR, HR)
pairs (:mod:`medsr.inference.selfsup.pairs`); the directions are both in-plane axes and, on slices
rotated by 45 degrees, both diagonals. A small 2-D network (:class:`medsr.models.SliceSR2d`) learns the
inverse (:mod:`medsr.inference.selfsup.train`), then runs along the slice axis in the two orthogonal
planes that contain it, each plane also flipped along either and both axes, and the eight results are
averaged (:mod:`medsr.inference.selfsup.apply`). Training inputs get extra Gaussian noise up to the
scan's own estimated noise level (:mod:`medsr.inference.selfsup.noise`), so the network sharpens
without amplifying noise.

A non-integer factor ``s`` trains for the integer ``R = ceil(s)`` (in-plane slices resampled to
``slice_spacing / R``) and resamples the network's output onto the convention grid of
:func:`medsr.geometry.upscaled_grid`. Intensities are normalised with robust percentiles inside and
returned in the input's units, unclipped.

:func:`selfsup_upscale` reads as its steps: check the request, normalise the scan, settle the slice
profile, then load or fit the network, apply it, and store it when asked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError
from medsr.inference.selfsup.apply import count_planes, upscale_volume
from medsr.inference.selfsup.config import ARCHITECTURE, SelfSupConfig
from medsr.inference.selfsup.noise import estimate_noise, input_noise
from medsr.inference.selfsup.pairs import training_stacks
from medsr.inference.selfsup.progress import progress_bars
from medsr.inference.selfsup.sampler import PatchSampler
from medsr.inference.selfsup.store import load_selfsup_model, save_selfsup_model
from medsr.inference.selfsup.thickness import checked_profile
from medsr.inference.selfsup.train import train_network
from medsr.io.volume import affine_of, spatial_shape, with_grid
from medsr.models import MODELS
from medsr.profiles import DEFAULT_PROFILE, MIXED_PROFILE, SELFSUP_PROFILES, SliceProfile
from medsr.runtime.device import resolve_device
from medsr.runtime.normalise import robust_range


@dataclass
class Scan:
    """The scan every step after the checks works on: normalised voxels, their grid and the output grid."""

    norm: torch.Tensor  # (X, Y, Z) float32, (x - lo) / (hi - lo), non-finite voxels 0
    axis: int
    sizes: np.ndarray  # (3,) voxel sizes, mm
    shape: tuple[int, ...]  # (X, Y, Z)
    shape_out: tuple[int, ...]
    affine_out: np.ndarray  # 4x4, the upscaled grid (geometry.upscaled_grid)
    factor: float
    lo: float
    hi: float
    sigma: float  # estimated noise std in normalised units (0 when not estimated)

    @property
    def spacing(self) -> float:
        """Slice spacing along ``axis``, mm."""
        return float(self.sizes[self.axis])

    @property
    def r(self) -> int:
        """The network's integer factor, ceil(factor)."""
        return int(math.ceil(self.factor - 1e-6))


def intensity_range(data: torch.Tensor, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Low and high intensity percentiles (runtime.normalise.robust_range), widened until high > low:
    to the minimum and maximum for a (nearly) flat volume, then to one unit for a constant one."""
    lo, hi = robust_range(data, percentiles)
    if hi <= lo:
        lo, hi = robust_range(data, (0.0, 100.0))
    return lo, hi if hi > lo else lo + 1.0


def selfsup_upscale(
    volume: MetaTensor,
    *,
    axis: int,
    factor: float,
    slice_profile: SliceProfile,
    budget_s: float | None = None,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    save_model: Path | None = None,
    model: Path | None = None,
    config: SelfSupConfig | None = None,
) -> tuple[MetaTensor, dict]:
    """Upscale ``volume`` (1, X, Y, Z) by ``factor`` along ``axis`` with a network trained on the scan.

    Args:
        slice_profile: the slices along ``axis``
            (:func:`medsr.inference.slice_profile.resolve_slice_profile`). Thickness (FWHM, mm): when not
            known (the slice spacing) and no ``model`` is reused, the spacing unless the slices clearly
            look thinner (gaps; :mod:`medsr.inference.selfsup.thickness`), then the thickness they look.
            Shape: ``"gaussian"`` or ``"boxcar"`` (thick slices that average thin ones), or ``"mixed"``
            when unknown (pairs of both shapes: a little less sharp than the right shape, far better than
            the wrong one); not named: ``"gaussian"``, or a reused ``model``'s own. A wrong shape costs
            far more than a wrong width (docs/performance.md).
        budget_s / steps: training length; either, both (the first reached ends training), or neither
            (``config.steps`` and ``config.budget_s``, the first reached). Steps alone are deterministic
            for a given ``seed`` on the CPU.
        device: ``auto``, ``cpu`` or ``cuda``.
        save_model / model: write / reuse the network (one ``.safetensors`` checkpoint); with ``model``
            nothing is trained.

    Returns:
        (upscaled MetaTensor on the :func:`medsr.geometry.upscaled_grid` grid, facts for the sidecar,
        the final slice profile's among them: :meth:`medsr.profiles.SliceProfile.facts` and ``profile``).
    """
    cfg = config or SelfSupConfig()
    grid = _check_request(volume, axis, factor, slice_profile.shape, steps, budget_s)
    dev = resolve_device(device)
    scan = normalised_scan(
        volume, axis, factor, grid, cfg.percentiles, noise=cfg.match_noise and model is None
    )
    if model is None:
        slice_profile = learned_profile(scan, slice_profile)
    with progress_bars(progress) as bars:
        t0 = time.perf_counter()
        if model is not None:
            net, slice_profile, loaded = load_network(Path(model), scan, slice_profile)
            facts = {**_facts(scan, slice_profile, dev, seed), **loaded}
        else:
            facts = _facts(scan, slice_profile, dev, seed)
            net = fit_network(scan, slice_profile, facts, cfg, dev, seed, steps, budget_s, bars)
        facts["training_s"] = round(time.perf_counter() - t0, 2)
        out = apply_network(net, scan, cfg, dev, bars, facts)
    facts["planes"] = cfg.planes
    if save_model is not None:
        facts["model_saved"] = store_network(Path(save_model), net, facts, seed)
    return with_grid(volume, out[None], scan.affine_out), facts


def _check_request(
    volume: MetaTensor,
    axis: int,
    factor: float,
    shape: str | None,
    steps: int | None,
    budget_s: float | None,
) -> tuple[tuple[int, ...], np.ndarray]:
    """Refuse what cannot run before any work (``shape``: the slice profile's); returns the output grid."""
    if volume.ndim != 4 or volume.shape[0] != 1:
        raise MedsrError(
            f"self-supervised upscaling takes one 3-D volume (1, X, Y, Z), got shape {tuple(volume.shape)}; "
            "pass one volume with --volume-index"
        )
    if axis not in (0, 1, 2):
        raise MedsrError(f"axis {axis} is not an array axis of a 3-D volume: use 0, 1 or 2")
    grid = geometry.upscaled_grid(spatial_shape(volume), affine_of(volume), axis, factor)
    if factor <= 1.0:
        raise MedsrError(f"factor {factor:g} does not upscale; self-supervised SR needs a factor above 1")
    if steps is not None and steps < 1:
        raise MedsrError(f"steps {steps} must be a positive number of training steps")
    if budget_s is not None and not budget_s > 0:
        raise MedsrError(f"training budget {budget_s} s must be positive")
    if shape is not None and shape not in SELFSUP_PROFILES:
        raise MedsrError(
            f"slice profile {shape!r} is not one of {', '.join(SELFSUP_PROFILES)} "
            f"({MIXED_PROFILE!r} when the shape is unknown)"
        )
    return grid


def normalised_scan(
    volume: MetaTensor,
    axis: int,
    factor: float,
    grid: tuple[tuple[int, ...], np.ndarray],
    percentiles: tuple[float, float],
    *,
    noise: bool,
) -> Scan:
    """The voxels mapped to [0, 1] by their robust range (one float32 copy) and, with ``noise``, their
    noise level."""
    data = volume.detach().as_subclass(torch.Tensor)[0].to("cpu", torch.float32)
    lo, hi = intensity_range(data, percentiles)
    norm = torch.nan_to_num_((data - lo).div_(hi - lo), nan=0.0, posinf=0.0, neginf=0.0)  # one copy
    sigma = estimate_noise(torch.movedim(norm, axis, 0)) if noise else 0.0
    sizes = geometry.voxel_sizes(affine_of(volume))
    return Scan(norm, axis, sizes, spatial_shape(volume), grid[0], grid[1], factor, lo, hi, sigma)


def learned_profile(scan: Scan, slice_profile: SliceProfile) -> SliceProfile:
    """The slice profile a new network learns: the shape named, else Gaussian; a thickness not known
    checked against the slices (:func:`medsr.inference.selfsup.thickness.checked_profile`)."""
    slice_profile = slice_profile.with_shape(slice_profile.shape or DEFAULT_PROFILE)
    if slice_profile.thickness_known:
        return slice_profile
    shape = DEFAULT_PROFILE if slice_profile.shape == MIXED_PROFILE else slice_profile.shape
    return checked_profile(slice_profile, scan.norm, scan.axis, scan.sizes, shape, scan.sigma)


def _facts(scan: Scan, slice_profile: SliceProfile, dev: torch.device, seed: int) -> dict[str, Any]:
    """The sidecar facts known before training (the later steps add theirs); the slice profile's
    (thickness_mm, profile and :meth:`SliceProfile.facts`) where the sidecar has always had them."""
    profile = slice_profile.facts()
    facts = {
        "method": "selfsup",
        "architecture": ARCHITECTURE,
        "factor": float(scan.factor),
        "effective_factor": scan.shape_out[scan.axis] / scan.shape[scan.axis],
        "network_factor": scan.r,
        "thickness_mm": profile.pop("thickness_mm"),
        "slice_spacing_mm": scan.spacing,
        "profile": slice_profile.shape,
        "training_hr_spacing_mm": scan.spacing / scan.r,
        "intensity_range": [scan.lo, scan.hi],
        "device": str(dev),
        "seed": int(seed),
    }
    return {**facts, **profile}


def load_network(
    path: Path, scan: Scan, slice_profile: SliceProfile
) -> tuple[torch.nn.Module, SliceProfile, dict[str, Any]]:
    """A stored per-scan network (``--model``), checked against this scan; nothing is trained.

    Returns the network, ``slice_profile`` with the network's own shape, and the facts of the loading.
    """
    net, doc = load_selfsup_model(path)
    _check_model(doc, scan.r, slice_profile.thickness_mm, scan.spacing, slice_profile.shape, path)
    loaded = {"model_loaded": str(path), "steps": 0, "architecture_kwargs": doc["model_args"]}
    return net, slice_profile.with_shape(doc.get("profile", DEFAULT_PROFILE)), loaded


def fit_network(
    scan: Scan,
    slice_profile: SliceProfile,
    facts: dict[str, Any],
    cfg: SelfSupConfig,
    dev: torch.device,
    seed: int,
    steps: int | None,
    budget_s: float | None,
    bars: Any,
) -> torch.nn.Module:
    """A new network trained on pairs cut from the scan's in-plane slices (seeded by ``seed``)."""
    kwargs = cfg.model_kwargs(scan.r)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MODELS[ARCHITECTURE](**kwargs)
    gen = torch.Generator().manual_seed(seed)
    stacks = training_stacks(
        scan.norm,
        scan.axis,
        scan.sizes,
        scan.r,
        slice_profile.thickness_mm,
        scan.spacing,
        slice_profile.shape,
        both_axes=cfg.both_axes,
        phases=cfg.phases,
        rotations=cfg.rotations,
    )
    extra = input_noise(scan.sigma, scan.r, slice_profile.thickness_mm, scan.spacing, slice_profile.shape)
    span = scan.hi - scan.lo
    facts.update(noise_std=scan.sigma * span, training_input_noise_std=extra * span)
    sampler = PatchSampler(stacks, cfg.patch, cfg.edge_mix, cfg.flips, gen, noise=extra)
    del stacks
    net.to(dev)
    if dev.type == "cpu":
        net.to(memory_format=torch.channels_last)
    if steps is None and budget_s is None:
        steps, budget_s = cfg.steps, cfg.budget_s
    advance = bars.training(steps, budget_s)
    net, done = train_network(
        net, sampler, steps=steps, budget_s=budget_s, config=cfg, device=dev, advance=advance
    )
    facts.update(steps=done, steps_planned=steps, budget_s=budget_s, architecture_kwargs=kwargs)
    return net


def apply_network(
    net: torch.nn.Module, scan: Scan, cfg: SelfSupConfig, dev: torch.device, bars: Any, facts: dict[str, Any]
) -> torch.Tensor:
    """The network run over the scan's through-plane planes, in the input's units: (X', Y', Z') float32.

    Frees the normalised voxels (``scan.norm``) once they are no longer needed.
    """
    net.to(dev)
    if dev.type == "cpu":
        net.to(memory_format=torch.channels_last)
    t1 = time.perf_counter()
    out = torch.empty(scan.shape_out, dtype=torch.float32)
    upscale_volume(
        net,
        scan.norm,
        scan.axis,
        scan.shape_out[scan.axis],
        out,
        planes=cfg.planes,
        device=dev,
        amp=cfg.amp,
        flips=cfg.tta_flips,
        batch_bytes=cfg.batch_bytes,
        progress=bars.inference(count_planes(scan.shape, scan.axis, cfg.planes)),
    )
    scan.norm = torch.empty(0)
    out.mul_(scan.hi - scan.lo).add_(scan.lo)
    facts["inference_s"] = round(time.perf_counter() - t1, 2)
    return out


def store_network(path: Path, net: torch.nn.Module, facts: dict[str, Any], seed: int) -> str:
    """Save the per-scan network with what reusing it needs (``--save-model``); returns the path written."""
    stored = {
        k: facts[k] for k in ("factor", "network_factor", "thickness_mm", "slice_spacing_mm", "profile")
    }
    stored.update(seed=int(seed), steps=facts["steps"])
    return str(save_selfsup_model(path, net, ARCHITECTURE, facts["architecture_kwargs"], stored))


def _check_model(
    doc: dict, r: int, thickness: float, spacing: float, profile: str | None, path: Path
) -> None:
    """Refuse a stored model trained for another network factor or a clearly different slice profile."""
    if int(doc.get("network_factor", -1)) != r:
        raise MedsrError(
            f"{path} was trained for factor {doc.get('factor')} (network x{doc.get('network_factor')}); this run "
            f"needs x{r}: pass the same --factor or train a new model (omit --model)"
        )
    for key, value in (("thickness_mm", thickness), ("slice_spacing_mm", spacing)):
        stored = float(doc.get(key, value))
        if abs(stored - value) > 0.1 * value:
            raise MedsrError(
                f"{path} was trained for {key.replace('_mm', '').replace('_', ' ')} {stored:g} mm; this scan has "
                f"{value:g} mm: pass --thickness {stored:g} if that is right, or train a new model (omit --model)"
            )
    stored_profile = doc.get("profile", DEFAULT_PROFILE)
    if profile is not None and profile != stored_profile:
        raise MedsrError(
            f"{path} was trained for {stored_profile} slice profiles, not {profile}: omit --profile to use "
            "the model as trained, or train a new model (omit --model)"
        )
