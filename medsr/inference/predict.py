"""``upscale``: one volume in, one upscaled volume out, by interpolation, self-supervision or a model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError, MedsrWarning
from medsr.inference.interpolate import INTERPOLATORS, METHOD_ALIASES, canonical_method, interpolate_upscale
from medsr.inference.options import ModelOptions, SelfSupOptions, learner_options
from medsr.inference.slice_profile import resolve_slice_profile
from medsr.io.volume import SLICE_KEYS, affine_of, count_nonfinite, spatial_shape, with_grid
from medsr.profiles import DEFAULT_PROFILE, MIXED_PROFILE, SliceProfile
from medsr.runtime.device import resolve_device

METHODS = ("selfsup", "model", *INTERPOLATORS)


def resolve_factor(
    volume: MetaTensor, axis: int | str | None, factor: float | None, spacing: float | None
) -> tuple[int, float]:
    """The array axis and factor to upscale by.

    ``axis`` None means the through-plane (thickest) axis; neither ``factor`` nor ``spacing`` means
    "bring that axis to the finest in-plane spacing".
    """
    affine = affine_of(volume)
    if factor is not None and spacing is not None:
        raise MedsrError("give --factor or --spacing, not both")
    ax = geometry.resolve_axis(affine, axis)
    n = spatial_shape(volume)[ax]
    if n < 2:
        hint = (
            ": a DICOM file holds one slice, pass the folder of the whole series (or all its files)"
            if volume.meta.get("format") == "dicom"
            else ""
        )
        raise MedsrError(
            f"{_name(volume)} has a single slice along axis {ax} (shape {spatial_shape(volume)}); through-plane "
            f"upscaling needs at least 2 slices{hint}"
        )
    if spacing is not None:
        factor = geometry.factor_for_spacing(affine, ax, spacing)
    elif factor is None:
        sizes = geometry.voxel_sizes(affine)
        factor = float(sizes[ax] / np.delete(sizes, ax).min())
    if not (np.isfinite(factor) and factor > 0):
        raise MedsrError(f"upscaling factor {factor} must be a positive number (e.g. 2, 4 or 2.5)")
    if factor < 1.0 + 1e-6:
        raise MedsrError(
            f"{_name(volume)}: factor {factor:.4g} along axis {ax} would not upscale (voxel sizes "
            f"{np.round(geometry.voxel_sizes(affine), 4).tolist()} mm); pass --factor above 1 or a finer --spacing"
        )
    return ax, float(factor)


def upscale(
    volume: MetaTensor | str | Path,
    *,
    factor: float | None = None,
    spacing: float | None = None,
    axis: int | str | None = None,
    method: str = "selfsup",
    thickness: float | None = None,
    model: str | Path | None = None,
    learner: SelfSupOptions | ModelOptions | None = None,
    **options: Any,
) -> MetaTensor:
    """Upscale a volume along its through-plane axis.

    Args:
        volume: (1, X, Y, Z) MetaTensor with a RAS affine, or a path for :func:`medsr.io.load_volume`.
        factor / spacing: upscaling factor, or target spacing in mm (default: the finest in-plane spacing).
        axis: array axis (0-2) or world letter; default the thickest axis.
        method: ``selfsup`` (learn from the scan itself), ``model`` (a checkpoint from ``medsr train``),
            or an interpolator (``bspline``, ``linear``, ``nearest``; ``cubic`` is ``bspline``, recorded
            as ``bspline`` in ``meta["medsr"]``).
        thickness: slice profile FWHM in mm (default: the volume's ``slice_thickness`` from DICOM
            SliceThickness or a sidecar JSON, else the slice spacing, which ``selfsup`` checks against
            the slices themselves; see :func:`medsr.inference.slice_profile.resolve_slice_profile`).
        learner: the learned method's typed options (:mod:`medsr.inference.options`); a
            :class:`SelfSupOptions` with a trained ``model`` gives its device and progress.
        options: the same as keywords, instead of ``learner`` (budget_s, steps, device, seed, progress,
            save_model, config; ``profile``, the slice profile shape, for ``selfsup`` only: default the
            volume's ``slice_profile`` (a ``medsr simulate`` sidecar), else Gaussian; ``"mixed"`` when
            unknown; roi_size, overlap, sw_batch_size for a trained ``model``).

    Returns:
        MetaTensor on the upscaled grid (same physical extent, see docs/geometry.md); ``meta["medsr"]``
        holds facts for the sidecar (method, factor, timings...).
    """
    if learner is not None and options:
        raise MedsrError(f"upscale takes learner= or keyword options, not both (got {', '.join(options)})")
    device = learner.device if learner is not None else options.get("device")
    if device is not None:  # every method, before the volume is read or anything trains
        resolve_device(device)
    if not isinstance(volume, MetaTensor):
        from medsr.io.readers import load_volume

        volume = load_volume(volume)
    method = canonical_method(method)
    if model is not None:
        method = _checkpoint_method(Path(model), method)
    if method not in METHODS:
        raise MedsrError(
            f"method {method!r} is not one of {', '.join((*METHODS, *METHOD_ALIASES))} ("
            + ", ".join(f"{a} = {c}" for a, c in METHOD_ALIASES.items())
            + ")"
        )
    ax, factor = resolve_factor(volume, axis, factor, spacing)
    if method != "selfsup":
        refuse_profile(method, options.pop("profile", None) or getattr(learner, "profile", None))
    learner = _typed_learner(method, learner, options)
    selfsup = isinstance(learner, SelfSupOptions)
    profile = resolve_slice_profile(
        volume, ax, thickness, learner.profile if selfsup else None, reads_shape=selfsup and model is None
    )
    facts: dict[str, Any] = {"method": method, "axis": ax, "factor": factor, **profile.facts()}
    volume, replaced = finite_volume(volume)
    if replaced:
        facts["non_finite_replaced"] = replaced
    if method in INTERPOLATORS:
        out = interpolate_upscale(volume, ax, factor, method)
    else:
        out, learned = _learned(volume, ax, factor, profile, model, learner)
        facts.update(learned)  # selfsup's refined slice profile (SliceProfile.facts) replaces the first
    bad = count_nonfinite(out)
    if bad:
        raise MedsrError(
            f"{_name(volume)}: method {method!r} produced {bad} NaN/infinite voxels from a finite input; "
            "nothing was written. This is a medsr bug, please report it; --method bspline avoids it"
        )
    shape_in = spatial_shape(volume)
    facts["effective_factor"] = spatial_shape(out)[ax] / shape_in[ax]
    facts["spacing_mm"] = geometry.voxel_sizes(affine_of(out)).round(6).tolist()
    for key in SLICE_KEYS:
        out.meta.pop(key, None)  # they described the input's slices
    out.meta["medsr"] = facts
    return out


def slice_assumption(facts: dict[str, Any]) -> str:
    """One line naming the slice profile a selfsup run assumed and where each part came from."""
    profile = facts.get("profile", DEFAULT_PROFILE)
    shape = "gaussian or boxcar (mixed)" if profile == MIXED_PROFILE else profile
    return (
        f"assumed {shape} slices of FWHM {facts['thickness_mm']:g} mm (thickness: "
        f"{facts.get('thickness_source', 'given')}; profile: {facts.get('profile_source', 'default')}); "
        "pass --thickness/--profile if the scan's slices differ"
        + (" (--profile mixed if their shape is unknown)" if "profile_source" not in facts else "")
    )


def refuse_profile(method: str, profile: str | None) -> None:
    """A slice profile only shapes selfsup training: refuse one given with any other method."""
    if profile is not None and method != "selfsup":
        raise MedsrError(
            f"--profile {profile} only shapes selfsup training; method {method!r} does not take it: drop --profile"
        )


def finite_volume(volume: MetaTensor) -> tuple[MetaTensor, dict[str, int]]:
    """``volume`` with NaN set to 0 and +-Inf clipped to the finite range, warning when anything changed.

    Returns the volume (unchanged when all voxels are finite) and the counts replaced (``nan``,
    ``posinf``, ``neginf``; empty when none). A volume with no finite voxel is refused.
    """
    data = volume.as_tensor() if isinstance(volume, MetaTensor) else torch.as_tensor(volume)
    if not count_nonfinite(data):
        return volume, {}
    finite = torch.isfinite(data)
    if not bool(finite.any()):
        raise MedsrError(f"{_name(volume)}: every voxel is NaN or infinite; there is no image to upscale")
    lo, hi = (float(v) for v in torch.aminmax(data[finite]))
    counts = {
        "nan": int(torch.count_nonzero(torch.isnan(data))),
        "posinf": int(torch.count_nonzero(torch.isposinf(data))),
        "neginf": int(torch.count_nonzero(torch.isneginf(data))),
    }
    clean = torch.nan_to_num(data, nan=0.0, posinf=hi, neginf=lo)
    inf = counts["posinf"] + counts["neginf"]
    warnings.warn(
        f"{_name(volume)}: {counts['nan']} NaN voxel(s) set to 0 and {inf} infinite voxel(s) clipped to the "
        f"finite range [{lo:.6g}, {hi:.6g}] before upscaling",
        MedsrWarning,
        stacklevel=3,
    )
    return with_grid(volume, clean, affine_of(volume)), counts


def _learned(
    volume: MetaTensor,
    axis: int,
    factor: float,
    slice_profile: SliceProfile,
    model: str | Path | None,
    learner: SelfSupOptions | ModelOptions,
) -> tuple[MetaTensor, dict[str, Any]]:
    """Run a learned method: selfsup for SelfSupOptions, else the trained checkpoint ``model``."""
    if isinstance(learner, SelfSupOptions):
        from medsr.inference.selfsup.pipeline import selfsup_upscale

        path = Path(model) if model is not None else None
        return selfsup_upscale(
            volume, axis=axis, factor=factor, slice_profile=slice_profile, model=path, **learner.as_kwargs()
        )
    if model is None:
        raise MedsrError("method 'model' needs --model CKPT (a checkpoint written by medsr train)")
    from medsr.inference.checkpoint_predict import model_upscale

    return model_upscale(
        volume, Path(model), axis=axis, factor=factor, slice_profile=slice_profile, **learner.as_kwargs()
    )


def _typed_learner(
    method: str, learner: SelfSupOptions | ModelOptions | None, options: dict[str, Any]
) -> SelfSupOptions | ModelOptions | None:
    """The options ``method`` runs with: ``learner`` (a SelfSupOptions becomes a trained model's
    ModelOptions), or the keyword ``options`` typed once; None for an interpolator."""
    if learner is None:
        return learner_options(method, options)
    if method == "model" and isinstance(learner, SelfSupOptions):
        return learner.for_model()
    if method == "selfsup" and isinstance(learner, ModelOptions):
        return SelfSupOptions(device=learner.device, progress=learner.progress)
    return learner if method in ("selfsup", "model") else None


def _checkpoint_method(model: Path, method: str) -> str:
    """``selfsup`` for a per-scan network saved by ``--save-model``, ``model`` for a ``medsr train`` checkpoint."""
    from medsr.runtime.checkpoint import read_meta

    kind = read_meta(model)["kind"]
    wanted = "selfsup" if kind == "selfsup" else "model"
    if method not in ("selfsup", "model", wanted):
        raise MedsrError(
            f"--model {model} is a {kind!r} checkpoint; it cannot be used with --method {method}"
        )
    return wanted


def _name(volume: MetaTensor) -> str:
    return str(volume.meta.get("filename_or_obj") or "the volume")
