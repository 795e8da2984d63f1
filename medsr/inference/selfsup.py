"""Self-supervised through-plane super-resolution: learn from the scan itself (SMORE / ECLARE family).

No training set and no pretrained weights. The in-plane axes of a thick-slice scan are high
resolution, so degrading in-plane slices along an in-plane direction with the through-plane slice
profile (Gaussian or boxcar, FWHM = slice thickness, slab spacing = slice spacing) yields (LR, HR)
pairs (:mod:`medsr.inference.patches`); the directions are both in-plane axes and, on slices rotated
by 45 degrees, both diagonals (:mod:`medsr.inference.training_views`). A small 2-D network (:class:`medsr.models.SliceSR2d`) learns the
inverse, then runs along the slice axis in the two orthogonal planes that contain it, each plane
also flipped along either and both axes, and the eight results are averaged
(:mod:`medsr.inference.apply`). Training inputs get extra Gaussian noise up to the scan's own
estimated noise level (:func:`medsr.inference.patches.input_noise`), so the network sharpens
without amplifying noise.

A non-integer factor ``s`` trains for the integer ``R = ceil(s)`` (in-plane slices resampled to
``slice_spacing / R``) and resamples the network's output onto the convention grid of
:func:`medsr.geometry.upscaled_grid`. Intensities are normalised with robust percentiles inside and
returned in the input's units, unclipped.
"""

from __future__ import annotations

import copy
import dataclasses
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
from medsr.inference.apply import count_planes, upscale_volume
from medsr.inference.patches import PatchSampler, estimate_noise, input_noise
from medsr.inference.selfsup_progress import progress_bars
from medsr.inference.selfsup_store import load_selfsup_model, save_selfsup_model
from medsr.inference.thickness_check import unknown_thickness
from medsr.inference.training_views import training_stacks
from medsr.io.volume import affine_of, spatial_shape, with_grid
from medsr.models import MODELS
from medsr.profiles import DEFAULT_PROFILE, MIXED_PROFILE, SELFSUP_PROFILES
from medsr.runtime.device import cpu_has_native_bf16, precision_for, resolve_device
from medsr.runtime.normalise import robust_range

ARCHITECTURE = "slice_sr2d"


@dataclass(frozen=True)
class SelfSupConfig:
    """Everything that shapes a self-supervised run (defaults chosen by benchmarks/selfsup_quality.py)."""

    features: int = 16
    blocks: int = 6
    expand: int = 4  # wide activation (WDSR): ReLUs act on features * expand channels
    fold: int = 2  # columns folded into channels (space-to-depth along the in-plane axis): 2x cheaper steps
    kernel: tuple[int, int] = (3, 3)
    grid: str = "lr"  # "lr": compute on the LR grid + sub-pixel step; "hr": refine a cubic upsampling
    base: str = "cubic"  # residual on "cubic", "linear" or "none"
    patch: tuple[int, int] = (16, 64)  # LR rows x columns of a training patch
    batch: int = 32
    steps: int = 10000  # default when neither steps nor budget_s is given, together with...
    budget_s: float = 200.0  # ...this time budget: whichever ends first
    lr: float = 2e-3
    edge_mix: float = 0.5  # share of uniform patch sampling (1.0 = uniform, 0.0 = edges only)
    both_axes: bool = True  # degrade along both in-plane axes (else the first only)
    rotations: tuple[float, ...] = (45.0,)  # also in-plane slices rotated by these angles (degrees)
    phases: bool = False  # train on every slab-grid phase (R LR stacks per axis), else phase 0 only
    flips: bool = True  # random flips of training pairs
    match_noise: bool = True  # add noise to training inputs up to the scan's own noise level
    planes: str = "both"  # fuse both plane sets ("both") or use one ("a", "b")
    tta_flips: bool = True  # average four flipped passes at inference (4x inference time)
    schedule: str = "cosine"  # learning rate over training: "cosine" decay or "constant"
    ema: float = 0.0  # average the weights (decay per step) and use the average; 0 = last weights
    amp: bool = True  # mixed precision (medsr.runtime.device.amp_policy; CPUs: bfloat16 training if native)
    percentiles: tuple[float, float] = (0.5, 99.5)
    batch_bytes: int = 256 * 2**20  # activation memory per inference batch

    def model_kwargs(self, factor: int) -> dict[str, Any]:
        return {
            "factor": factor,
            "features": self.features,
            "blocks": self.blocks,
            "kernel": tuple(self.kernel),
            "grid": self.grid,
            "base": self.base,
            "expand": self.expand,
            "fold": self.fold,
        }


def intensity_range(data: torch.Tensor, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Low and high intensity percentiles (runtime.normalise.robust_range), widened until high > low:
    to the minimum and maximum for a (nearly) flat volume, then to one unit for a constant one."""
    lo, hi = robust_range(data, percentiles)
    if hi <= lo:
        lo, hi = robust_range(data, (0.0, 100.0))
    return lo, hi if hi > lo else lo + 1.0


def train_network(
    net: torch.nn.Module,
    sampler: PatchSampler,
    *,
    steps: int | None,
    budget_s: float | None,
    config: SelfSupConfig,
    device: torch.device,
    advance=None,
) -> tuple[torch.nn.Module, int]:
    """Adam + L1 over steps or time (whichever ends first); returns (network to use, steps done).

    The learning rate follows ``config.schedule``; with ``config.ema`` > 0 the returned network holds
    the exponential moving average of the weights (a copy; ``net`` keeps the last weights).
    """
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    params = list(net.parameters())
    average = copy.deepcopy(net) if config.ema > 0 else None
    avg_params = list(average.parameters()) if average is not None else []
    precision = precision_for(device, amp=config.amp, training=True, cpu_bf16=cpu_has_native_bf16())
    scaler = precision.grad_scaler()
    start, done = time.perf_counter(), 0
    channels_last = device.type == "cpu"
    while True:
        frac = done / steps if steps else 0.0
        if budget_s:
            frac = max(frac, (time.perf_counter() - start) / budget_s)
        if frac >= 1.0:
            return (average if average is not None else net), done
        if config.schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = config.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac)))
        lr_patch, hr_patch = sampler.sample(config.batch)
        lr_patch, hr_patch = lr_patch.to(device), hr_patch.to(device)
        if channels_last:
            lr_patch = lr_patch.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            pred = net(lr_patch)
        loss = torch.nn.functional.l1_loss(pred.float(), hr_patch)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:  # float16 on a GPU without bfloat16
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        done += 1
        if average is not None:  # warm-started decay so early averages are not dominated by the init
            with torch.no_grad():
                torch._foreach_lerp_(avg_params, params, 1.0 - min(config.ema, (1 + done) / (10 + done)))
        if advance is not None:
            advance(done, steps, frac, loss.item())


def selfsup_upscale(
    volume: MetaTensor,
    *,
    axis: int,
    factor: float,
    thickness: float | None = None,
    profile: str | None = None,
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
        thickness: slice profile FWHM in mm; None = unknown: the slice spacing along ``axis``, unless the
            slices clearly look thinner than that (gaps; :mod:`medsr.inference.thickness_check`), then
            the thickness they look.
        profile: slice profile shape, ``"gaussian"`` or ``"boxcar"`` (thick slices that average thin ones),
            or ``"mixed"`` when the shape is unknown (pairs of both shapes: a little less sharp than the
            right shape, far better than the wrong one); None = ``"gaussian"``, or a reused ``model``'s own
            profile. A wrong shape costs far more than a wrong width (docs/performance.md).
        budget_s / steps: training length; either, both (the first reached ends training), or neither
            (``config.steps`` and ``config.budget_s``, the first reached). Steps alone are deterministic
            for a given ``seed`` on the CPU.
        device: ``auto``, ``cpu`` or ``cuda``.
        save_model / model: write / reuse the network (one ``.safetensors`` checkpoint); with ``model``
            nothing is trained.

    Returns:
        (upscaled MetaTensor on the :func:`medsr.geometry.upscaled_grid` grid, facts for the sidecar).
    """
    cfg = config or SelfSupConfig()
    if volume.ndim != 4 or volume.shape[0] != 1:
        raise MedsrError(
            f"self-supervised upscaling takes one 3-D volume (1, X, Y, Z), got shape {tuple(volume.shape)}; "
            "pass one volume with --volume-index"
        )
    if axis not in (0, 1, 2):
        raise MedsrError(f"axis {axis} is not an array axis of a 3-D volume: use 0, 1 or 2")
    affine, shape = affine_of(volume), spatial_shape(volume)
    shape_out, affine_out = geometry.upscaled_grid(shape, affine, axis, factor)
    if factor <= 1.0:
        raise MedsrError(f"factor {factor:g} does not upscale; self-supervised SR needs a factor above 1")
    sizes = geometry.voxel_sizes(affine)
    spacing = float(sizes[axis])
    if thickness is not None and not (np.isfinite(thickness) and thickness > 0):
        raise MedsrError(f"slice thickness {thickness} mm must be positive")
    if steps is not None and steps < 1:
        raise MedsrError(f"steps {steps} must be a positive number of training steps")
    if budget_s is not None and not budget_s > 0:
        raise MedsrError(f"training budget {budget_s} s must be positive")
    profile = profile.strip().lower() if profile is not None else None
    if profile is not None and profile not in SELFSUP_PROFILES:
        raise MedsrError(
            f"slice profile {profile!r} is not one of {', '.join(SELFSUP_PROFILES)} "
            f"({MIXED_PROFILE!r} when the shape is unknown)"
        )
    r = int(math.ceil(factor - 1e-6))
    dev = resolve_device(device)

    data = volume.detach().as_subclass(torch.Tensor)[0].to("cpu", torch.float32)
    lo, hi = intensity_range(data, cfg.percentiles)
    norm = torch.nan_to_num_((data - lo).div_(hi - lo), nan=0.0, posinf=0.0, neginf=0.0)  # one copy
    sigma = estimate_noise(torch.movedim(norm, axis, 0)) if cfg.match_noise and model is None else 0.0
    checked: dict[str, Any] = {}
    if thickness is None and model is None:
        check_shape = DEFAULT_PROFILE if profile in (None, MIXED_PROFILE) else profile
        thickness, checked = unknown_thickness(norm, axis, sizes, check_shape, sigma)
    thickness = spacing if thickness is None else float(thickness)
    facts: dict[str, Any] = {
        "method": "selfsup",
        "architecture": ARCHITECTURE,
        "factor": float(factor),
        "effective_factor": shape_out[axis] / shape[axis],
        "network_factor": r,
        "thickness_mm": thickness,
        "slice_spacing_mm": spacing,
        "profile": profile or DEFAULT_PROFILE,
        "training_hr_spacing_mm": spacing / r,
        "intensity_range": [lo, hi],
        "device": str(dev),
        "seed": int(seed),
        **checked,
    }

    n_planes = count_planes(shape, axis, cfg.planes)
    with progress_bars(progress) as bars:
        t0 = time.perf_counter()
        if model is not None:
            net, doc = load_selfsup_model(Path(model))
            _check_model(doc, r, thickness, spacing, profile, model)
            facts.update(
                model_loaded=str(model),
                steps=0,
                architecture_kwargs=doc["model_args"],
                profile=doc.get("profile", DEFAULT_PROFILE),
            )
        else:
            kwargs = cfg.model_kwargs(r)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = MODELS[ARCHITECTURE](**kwargs)
            gen = torch.Generator().manual_seed(seed)
            stacks = training_stacks(
                norm,
                axis,
                sizes,
                r,
                thickness,
                spacing,
                facts["profile"],
                both_axes=cfg.both_axes,
                phases=cfg.phases,
                rotations=cfg.rotations,
            )
            extra = input_noise(sigma, r, thickness, spacing, facts["profile"])
            facts.update(noise_std=sigma * (hi - lo), training_input_noise_std=extra * (hi - lo))
            sampler = PatchSampler(stacks, cfg.patch, cfg.edge_mix, cfg.flips, gen, noise=extra)
            del stacks
            net.to(dev)
            if dev.type == "cpu":
                net.to(memory_format=torch.channels_last)
            if steps is None and budget_s is None:
                steps, budget_s = cfg.steps, cfg.budget_s
            planned = steps
            net, done = train_network(
                net,
                sampler,
                steps=planned,
                budget_s=budget_s,
                config=cfg,
                device=dev,
                advance=bars.training(planned, budget_s),
            )
            del sampler
            facts.update(steps=done, steps_planned=planned, budget_s=budget_s, architecture_kwargs=kwargs)
        facts["training_s"] = round(time.perf_counter() - t0, 2)

        net.to(dev)
        if dev.type == "cpu":
            net.to(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        out = torch.empty(shape_out, dtype=torch.float32)
        upscale_volume(
            net,
            norm,
            axis,
            shape_out[axis],
            out,
            planes=cfg.planes,
            device=dev,
            amp=cfg.amp,
            flips=cfg.tta_flips,
            batch_bytes=cfg.batch_bytes,
            progress=bars.inference(n_planes),
        )
        del norm
        out.mul_(hi - lo).add_(lo)
        facts["inference_s"] = round(time.perf_counter() - t1, 2)
    facts["planes"] = cfg.planes
    if save_model is not None:
        stored = {
            k: facts[k] for k in ("factor", "network_factor", "thickness_mm", "slice_spacing_mm", "profile")
        }
        stored.update(seed=int(seed), steps=facts["steps"])
        facts["model_saved"] = str(
            save_selfsup_model(Path(save_model), net, ARCHITECTURE, facts["architecture_kwargs"], stored)
        )
    return with_grid(volume, out[None], affine_out), facts


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


def config_with(**changes: Any) -> SelfSupConfig:
    """The default config with some fields changed (for ablations)."""
    return dataclasses.replace(SelfSupConfig(), **changes)
