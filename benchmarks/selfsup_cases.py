"""Test volumes, scores and named variants for benchmarks/selfsup_quality.py (no downloads).

Volumes: nilearn's MNI152 2009 1 mm T1 and GM/WM maps (shipped inside nilearn), and a synthetic
head CT in HU (air -1000, soft tissue ~40, brain 25-40, bone 600-1800) built here from a seed.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from medsr import geometry
from medsr.io.volume import affine_of, make_volume
from medsr.runtime import metrics
from medsr.runtime.normalise import robust_range
from medsr.transforms.array import simulate_thick_slices
from medsr.transforms.functional import FWHM_PER_SIGMA
from medsr.transforms.noise import add_noise, parse_noise

MNI = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

#: Design variants for --ablation: SelfSupConfig fields changed from the default.
ABLATIONS: dict[str, dict] = {
    "default": {},
    "hr-grid (refine cubic; SMORE-like)": {"grid": "hr"},
    "no base (sub-pixel only)": {"base": "none"},
    "linear base": {"base": "linear"},
    "uniform patch sampling": {"edge_mix": 1.0},
    "edge-heavy sampling (0.1 uniform)": {"edge_mix": 0.1},
    "one in-plane axis": {"both_axes": False},
    "no rotated slices (axes only)": {"rotations": ()},
    "slices rotated by 30 and 60 degrees": {"rotations": (30.0, 60.0)},
    "no flip augmentation": {"flips": False},
    "no noise matching": {"match_noise": False},
    "one plane set (no fusion)": {"planes": "a"},
    "no flip TTA at inference": {"tta_flips": False},
    "every slab phase (R stacks per axis)": {"phases": True},
    "EMA of weights (0.999)": {"ema": 0.999},
    "constant learning rate": {"schedule": "constant"},
    "float32 (no bfloat16 autocast)": {"amp": False},
    "no column folding": {"fold": 1},
    "previous default (no folding or TTA; 3000-step cap)": {
        "fold": 1,
        "tta_flips": False,
        "steps": 3000,
        "rotations": (),
    },
    "32 features without expansion (default before that)": {
        "features": 32,
        "expand": 1,
        "fold": 1,
        "tta_flips": False,
        "rotations": (),
    },
    "24 features x2 expansion": {"features": 24, "expand": 2},
    "16 features x6 expansion": {"features": 16, "expand": 6},
    "4 blocks (default before 6)": {"blocks": 4},
    "8 blocks": {"blocks": 8},
    "patch 24x96": {"patch": (24, 96)},
    "batch 16": {"batch": 16},
}

#: Cases for --suite: load_case arguments.
SUITE: dict[str, dict] = {
    "t1 S-I x4": {"name": "t1"},
    "t1 R-L x4": {"name": "t1", "axis": 0},
    "t1 A-P x4": {"name": "t1", "axis": 1},
    "t1 S-I x2": {"name": "t1", "spacing": 2.0},
    "t1 S-I x3": {"name": "t1", "spacing": 3.0},
    "t1 S-I x5": {"name": "t1", "spacing": 5.0},
    "t1 S-I x2.5": {"name": "t1", "spacing": 2.5},
    "t1 S-I x3.33": {"name": "t1", "spacing": 10 / 3},
    "t1 gap 2.5/4 mm": {"name": "t1", "spacing": 4.0, "thickness": 2.5},
    "t1 overlap 5/4 mm": {"name": "t1", "spacing": 4.0, "thickness": 5.0},
    "t1 x4 rician SNR 30": {"name": "t1", "noise": "rician:30"},
    "t1 x4 from a noisy 1 mm scan (rician SNR 20)": {"name": "t1", "hr_noise": "rician:20"},
    "ct x4 from a noisy 1 mm scan (gaussian 20 HU)": {"name": "ct", "hr_noise": "gaussian:20"},
    "gm S-I x4": {"name": "gm"},
    "wm S-I x4": {"name": "wm"},
    "ct S-I x4 (HU)": {"name": "ct"},
    "ct S-I x5 (HU)": {"name": "ct", "spacing": 5.0},
    "ct x4 gaussian 20 HU": {"name": "ct", "noise": "gaussian:20"},
    "ct x4 with a 1.4 mm PSF (HU)": {"name": "ct", "psf": 1.4},
    "t1 x4 boxcar slices": {"name": "t1", "profile": "boxcar"},
    "t1 x4 boxcar slices told gaussian": {"name": "t1", "profile": "boxcar", "assumed_profile": "gaussian"},
    "t1 x4 gaussian slices told boxcar": {"name": "t1", "assumed_profile": "boxcar"},
    "ct x4 boxcar slices (HU)": {"name": "ct", "profile": "boxcar"},
    "ct x4 boxcar slices told gaussian (HU)": {
        "name": "ct",
        "profile": "boxcar",
        "assumed_profile": "gaussian",
    },
    "ct x4 gaussian slices told boxcar (HU)": {"name": "ct", "assumed_profile": "boxcar"},
    "t1 x4 gaussian slices told mixed": {"name": "t1", "assumed_profile": "mixed"},
    "t1 x4 boxcar slices told mixed": {"name": "t1", "profile": "boxcar", "assumed_profile": "mixed"},
    "ct x4 gaussian slices told mixed (HU)": {"name": "ct", "assumed_profile": "mixed"},
    "ct x4 boxcar slices told mixed (HU)": {"name": "ct", "profile": "boxcar", "assumed_profile": "mixed"},
    "t1 x4 rician SNR 30 told mixed": {"name": "t1", "noise": "rician:30", "assumed_profile": "mixed"},
    "t1 1 mm slices every 4 mm told 4 mm": {"name": "t1", "thickness": 1.0, "assumed_thickness": 4.0},
    "t1 1 mm slices every 4 mm": {"name": "t1", "thickness": 1.0},
    "t1 1 mm slices every 4 mm not told the thickness": {
        "name": "t1",
        "thickness": 1.0,
        "tell_thickness": False,
    },
    "t1 x4 not told the thickness": {"name": "t1", "tell_thickness": False},
    "t1 x4 told 3 mm": {"name": "t1", "assumed_thickness": 3.0},
    "ct x4 told 2.7 mm (HU)": {"name": "ct", "assumed_thickness": 2.7},
    "t1 x4 boxcar slices told gaussian 2.4 mm": {
        "name": "t1",
        "profile": "boxcar",
        "assumed_profile": "gaussian",
        "assumed_thickness": 2.4,
    },
    "ct 1 mm slices every 4 mm not told the thickness (HU)": {
        "name": "ct",
        "thickness": 1.0,
        "tell_thickness": False,
    },
    "ct x4 not told the thickness (HU)": {"name": "ct", "tell_thickness": False},
}


def mni_volume(name: str):
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / MNI[name]
    from medsr.io.readers import load_volume

    return load_volume(path)


def synthetic_ct(shape: tuple[int, int, int] = (176, 208, 176), seed: int = 0):
    """A head-CT-like volume in HU on a 1 mm RAS grid: scalp, skull with diploe, folded brain, CSF, sinuses."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    x, y, z = grids
    r = np.sqrt((x / 78) ** 2 + (y / 96) ** 2 + (z / 80) ** 2)  # 1 at the skin
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    field /= field.std()
    fine = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    fine /= fine.std()
    vol = np.full(shape, -1000.0)
    vol[r < 1.0] = 40.0 + 8.0 * fine[r < 1.0]  # scalp and soft tissue
    skull = (r < 0.93) & (r >= 0.86)
    diploe = (r < 0.915) & (r >= 0.875)
    vol[skull] = 1500.0 + 150.0 * fine[skull]
    vol[diploe] = 650.0 + 250.0 * fine[diploe]
    brain = r < 0.86
    depth = (0.86 - r) * 80  # mm below the inner table
    grey = brain & ((depth < 3.5) | (field > 0.6))
    vol[brain] = 28.0 + 2.0 * fine[brain]
    vol[grey] = 40.0 + 2.0 * fine[grey]
    sulci = brain & (np.abs(field - 0.6) < 0.08) & (depth < 25)
    vol[sulci] = 8.0
    for cx, cy, cz, ax, ay, az in ((-9, 5, 8, 5, 22, 9), (9, 5, 8, 5, 22, 9), (0, -20, -4, 3, 6, 5)):
        ventricle = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 < 1
        vol[ventricle] = 6.0
    for _ in range(12):  # calcifications and skull-base bone
        c = rng.uniform(-0.5, 0.5, 3) * np.array(shape) * 0.6
        s = rng.uniform(1.0, 4.0, 3)
        blob = ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2 < 1
        vol[blob] = rng.uniform(150, 1200)
    sinus = ((x / 14) ** 2 + ((y - 70) / 12) ** 2 + ((z + 35) / 10) ** 2 < 1) | (
        ((np.abs(x) - 22) / 10) ** 2 + ((y - 45) / 14) ** 2 + ((z + 45) / 12) ** 2 < 1
    )
    vol[sinus] = -1000.0
    vol = ndimage.gaussian_filter(vol, 0.6)  # scanner point spread in-plane and through-plane
    vol += 4.0 * rng.standard_normal(shape)  # quantum noise, HU
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2
    return make_volume(vol.astype(np.float32), affine)


def load_case(
    name: str = "t1",
    axis: int | None = None,
    spacing: float | None = None,
    thickness: float | None = None,
    noise: str | None = None,
    profile: str = "gaussian",
    assumed_profile: str | None = None,
    psf: float = 0.0,
    hr_noise: str | None = None,
    assumed_thickness: float | None = None,
    tell_thickness: bool = True,
) -> dict:
    """HR volume, simulated LR volume, and what scoring needs; HR is cropped so LR slabs tile it exactly.

    ``profile`` shapes the simulated slices; ``assumed_profile`` is what medsr is told (default: the same),
    and likewise ``assumed_thickness`` for ``thickness``; with ``tell_thickness`` False medsr is told no
    thickness (as for a NIfTI file without a sidecar: it checks the slices itself).
    ``psf`` > 0 first blurs the HR volume with an isotropic Gaussian of that FWHM in mm (a scanner's
    point spread: the synthetic CT is otherwise voxelised, with staircase edges and no partial volume).
    ``hr_noise`` (e.g. ``"rician:20"``) makes the HR volume a noisy acquisition: the thick slices are
    simulated from it and it is the reference scores compare against, as with a real thin-slice scan
    (its noise caps every method's PSNR; ``clean`` keeps the noise-free volume for a second score).
    """
    hr = synthetic_ct() if name == "ct" else mni_volume(name)
    affine = affine_of(hr)
    if psf > 0:
        sigma = psf / FWHM_PER_SIGMA / geometry.voxel_sizes(affine)
        blurred = ndimage.gaussian_filter(hr.as_tensor().numpy()[0].astype(np.float64), sigma)
        hr = make_volume(blurred.astype(np.float32), affine)
    clean = None
    if hr_noise:
        clean = hr.as_tensor().numpy()[0].astype(np.float32)
        noisy, _ = add_noise(hr.as_tensor()[0].float(), parse_noise(hr_noise), rng=1)
        hr = make_volume(noisy, affine)
    ax = geometry.axis_from_direction(affine, "S") if axis is None else axis
    hr_spacing = float(geometry.voxel_sizes(affine)[ax])
    spacing = 4.0 if spacing is None else spacing
    thickness = spacing if thickness is None else thickness
    ratio = Fraction(spacing / hr_spacing).limit_denominator(12)
    n = hr.shape[1 + ax]
    m = (n // ratio.numerator) * ratio.denominator  # whole slabs whose extent is a whole number of HR voxels
    keep = int(m * ratio)
    index = [slice(None)] * 4
    index[1 + ax] = slice(0, keep)
    hr = make_volume(hr.as_tensor()[tuple(index)], affine)
    lr = simulate_thick_slices(hr, thickness, float(spacing), axis=ax, profile=profile, noise=noise, rng=0)
    data = hr.as_tensor().numpy()[0].astype(np.float32)
    valid = np.ones(data.shape, bool)
    mask, _ = metrics.foreground_mask(data, valid)  # Otsu, as medsr evaluate --mask auto
    mask = metrics.exclude_edge_slabs(mask, valid, ax, int(np.ceil(float(ratio))))
    whole = metrics.exclude_edge_slabs(valid, valid, ax, int(np.ceil(float(ratio))))
    lo, hi = robust_range(data, metrics.PERCENTILES, max_voxels=None)
    title = (
        f"{name} {tuple(hr.shape[1:])}, axis {ax}, thickness {thickness:g} mm, spacing {float(spacing):g} mm"
        f" (x{float(ratio):.4g}), {profile} profile, noise {noise or 'none'}"
        + (f", HR blurred by a {psf:g} mm FWHM PSF" if psf > 0 else "")
        + (f", medsr told {assumed_profile}" if assumed_profile not in (None, profile) else "")
        + (f", HR reference itself noisy ({hr_noise})" if hr_noise else "")
        + (f", medsr told {assumed_thickness:g} mm" if assumed_thickness not in (None, thickness) else "")
        + ("" if tell_thickness else ", medsr not told the thickness")
    )
    if clean is not None:
        clean = clean[tuple(index[1:])]
    return {
        "name": name,
        "title": title,
        "hr": data,
        "lr": lr,
        "axis": ax,
        "factor": float(ratio),
        "thickness": float(thickness if assumed_thickness is None else assumed_thickness)
        if tell_thickness
        else None,
        "profile": assumed_profile or profile,
        "mask": mask,
        "whole": whole,
        "range": hi - lo,
        "clean": clean,
    }


def score(case: dict, out: np.ndarray | torch.Tensor, whole: bool = False) -> dict:
    """PSNR (dB) and SSIM of ``out`` vs HR with medsr.runtime.metrics' conventions (docs/evaluation.md).

    Mask: Otsu foreground of HR minus one LR slab at each end of the slice axis; data range: P0.5-P99.5
    of HR; SSIM: 3-D Gaussian window (sigma 1.5) averaged over the mask. With ``whole``, also
    ``psnr_all`` and ``ssim_all`` over every voxel but the end slabs (background included: the
    convention of most SR papers and of SSIM/PSNR library defaults, which score the whole array).
    A case with a noisy HR reference (``hr_noise``) also gets ``psnr_clean`` and ``ssim_clean``.
    """
    out = np.asarray(out, dtype=np.float32)
    hr, mask, rng = case["hr"], case["mask"], case["range"]
    if out.shape != hr.shape:
        raise ValueError(f"output shape {out.shape} is not the HR shape {hr.shape}")
    scores = {"psnr": metrics.psnr(out, hr, mask, rng), "ssim": metrics.ssim(out, hr, mask, rng)}
    if whole:
        every = case["whole"]
        scores.update(psnr_all=metrics.psnr(out, hr, every, rng), ssim_all=metrics.ssim(out, hr, every, rng))
    if case.get("clean") is not None:  # the HR reference is noisy: also score against the noise-free volume
        clean = case["clean"]
        scores.update(
            psnr_clean=metrics.psnr(out, clean, mask, rng), ssim_clean=metrics.ssim(out, clean, mask, rng)
        )
    return scores


_COMMA_NAMES = [name for name in (*ABLATIONS, *SUITE) if "," in name]
if _COMMA_NAMES:  # --cases / --variants split on commas: such a name could never be selected
    raise ValueError(f"benchmark case and variant names may not contain commas: {_COMMA_NAMES}")
