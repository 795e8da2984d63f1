"""Quality, time and memory of self-supervised upscaling (``medsr infer --method selfsup``) vs interpolation.

Default run (the targets in docs/performance.md): nilearn's MNI152 1 mm T1, thick slices simulated
along S-I (Gaussian FWHM 4 mm, spacing 4 mm), upscaled x4 back onto the HR grid; PSNR and SSIM inside
a foreground mask (data range from the HR volume) for nearest, linear, cubic B-spline and medsr,
with wall time and peak RSS. medsr runs in a fresh process so its peak RSS is its own.

    python benchmarks/selfsup_quality.py                       # the target table
    python benchmarks/selfsup_quality.py --ablation            # design choices at a fixed budget
    python benchmarks/selfsup_quality.py --suite               # other volumes, axes, factors, gaps, noise, CT
    python benchmarks/selfsup_quality.py --volume ct --spacing 5 --thickness 5 --axis 2
    python benchmarks/selfsup_quality.py --profile boxcar --assume-profile gaussian   # a wrong profile

Timings depend on the machine and on whatever else runs on it; the peak RSS includes Python, torch and
the input and output arrays.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from selfsup_cases import ABLATIONS, SUITE, load_case, score  # noqa: E402


def _child(conn, lr_array, lr_affine, kwargs, overrides, threads) -> None:
    """Run selfsup_upscale in a fresh process; send back the output, its facts, wall s and peak RSS MB."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from medsr.inference.selfsup.config import config_with
    from medsr.inference.selfsup.pipeline import selfsup_upscale
    from medsr.inference.slice_profile import resolve_slice_profile
    from medsr.io.volume import make_volume

    lr = make_volume(lr_array, lr_affine)
    t0, c0 = time.perf_counter(), time.process_time()
    thickness, shape = kwargs.pop("thickness"), kwargs.pop("profile")
    profile = resolve_slice_profile(lr, kwargs["axis"], thickness, shape, reads_shape=True)
    config = config_with(**overrides)
    out, facts = selfsup_upscale(lr, slice_profile=profile, config=config, progress=False, **kwargs)
    facts["wall_s"] = time.perf_counter() - t0
    facts["cpu_s"] = time.process_time() - c0
    facts["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send((out.as_tensor().numpy()[0], facts))
    conn.close()


def run_medsr(
    case: dict, overrides: dict | None = None, threads: int = 0, **kwargs
) -> tuple[np.ndarray, dict]:
    """selfsup_upscale on ``case['lr']`` in a spawned process; returns (output array, facts)."""
    args = {
        "axis": case["axis"],
        "factor": case["factor"],
        "thickness": case["thickness"],
        "profile": case["profile"],
        **kwargs,
    }
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    lr = case["lr"]
    proc = ctx.Process(
        target=_child,
        args=(child, lr.as_tensor().numpy()[0], lr.affine.numpy(), args, overrides or {}, threads),
    )
    proc.start()
    child.close()
    out, facts = parent.recv()
    proc.join()
    return out, facts


def baselines(case: dict, whole: bool = False) -> list[dict]:
    from medsr.inference.interpolate import interpolate_upscale

    rows = []
    for method in ("nearest", "linear", "bspline"):
        t0 = time.perf_counter()
        out = interpolate_upscale(case["lr"], case["axis"], case["factor"], method)
        wall = time.perf_counter() - t0
        rows.append(
            {
                "method": "cubic B-spline" if method == "bspline" else method,
                "wall_s": wall,
                **score(case, out.as_tensor().numpy()[0], whole),
            }
        )
    return rows


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(format(r.get(c[0], ""), c[2]) if c[0] in r else "" for c in columns) + " |"
        for r in rows
    ]
    return "\n".join([head, rule, *body])


MAIN_COLUMNS = [
    ("method", "method", ""),
    ("psnr", "PSNR dB", ".2f"),
    ("ssim", "SSIM", ".4f"),
    ("psnr_all", "whole PSNR dB", ".2f"),
    ("ssim_all", "whole SSIM", ".4f"),
    ("wall_s", "wall s", ".1f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
]


def main_table(case: dict, args) -> None:
    rows = baselines(case, whole=True)
    out, facts = run_medsr(case, threads=args.threads, steps=args.steps, budget_s=args.budget, seed=args.seed)
    rows.append(
        {
            "method": "medsr selfsup",
            "wall_s": facts["wall_s"],
            "peak_rss_mb": facts["peak_rss_mb"],
            **score(case, out, whole=True),
        }
    )
    cubic, medsr = rows[2], rows[-1]
    print(
        f"\n{case['title']}; {facts['steps']} steps, training {facts['training_s']:.1f} s, inference "
        f"{facts['inference_s']:.1f} s, CPU {facts['cpu_s']:.0f} s, device {facts['device']}, seed {args.seed}\n"
    )
    print(table(rows, MAIN_COLUMNS))
    gain, gain_all = medsr["psnr"] - cubic["psnr"], medsr["psnr_all"] - cubic["psnr_all"]
    print(f"\nmedsr - cubic, foreground: {gain:+.2f} dB PSNR, {medsr['ssim'] - cubic['ssim']:+.4f} SSIM")
    print(
        f"medsr - cubic, whole volume: {gain_all:+.2f} dB PSNR, {medsr['ssim_all'] - cubic['ssim_all']:+.4f} SSIM"
    )
    default_case = (args.axis, args.spacing, args.thickness, args.noise, args.assume_profile) == (None,) * 5
    if case["name"] == "t1" and default_case and args.profile == "gaussian":
        for label, key in (("foreground", ""), ("whole volume", "_all")):
            checks = [
                ("PSNR >= cubic + 5 dB", medsr["psnr" + key] - cubic["psnr" + key] >= 5.0),
                ("SSIM >= 0.975", medsr["ssim" + key] >= 0.975),
            ]
            print(
                f"quality targets ({label}): "
                + ", ".join(f"{n}: {'met' if ok else 'MISSED'}" for n, ok in checks)
            )
        limits = [
            ("wall <= 240 s", facts["wall_s"] <= 240),
            ("peak RSS <= 2048 MB", facts["peak_rss_mb"] <= 2048),
        ]
        print("limits: " + ", ".join(f"{n}: {'met' if ok else 'MISSED'}" for n, ok in limits))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "facts": facts}, indent=2, default=str))


ABLATION_COLUMNS = [
    ("variant", "variant", ""),
    ("steps", "steps", "d"),
    ("training_s", "train s", ".0f"),
    ("inference_s", "infer s", ".1f"),
    ("cpu_s", "CPU s", ".0f"),
    ("psnr", "PSNR dB", ".2f"),
    ("gain", "vs cubic dB", "+.2f"),
    ("ssim", "SSIM", ".4f"),
]


def ablation(case: dict, args) -> None:
    cubic = next(r for r in baselines(case) if r["method"] == "cubic B-spline")
    names = args.variants
    print(
        f"\n{case['title']}; cubic B-spline {cubic['psnr']:.2f} dB / SSIM {cubic['ssim']:.4f}; "
        f"training budget {args.budget or 'default'} s, steps {args.steps or 'default'}\n"
    )
    print(table([], ABLATION_COLUMNS))
    for name in names:
        out, facts = run_medsr(
            case,
            ABLATIONS[name],
            threads=args.threads,
            steps=args.steps,
            budget_s=args.budget,
            seed=args.seed,
        )
        row = {"variant": name, **facts, **score(case, out)}
        row["gain"] = row["psnr"] - cubic["psnr"]
        print(table([row], ABLATION_COLUMNS).splitlines()[-1], flush=True)


SUITE_COLUMNS = [
    ("case", "case", ""),
    ("cubic", "cubic dB", ".2f"),
    ("psnr", "medsr dB", ".2f"),
    ("gain", "gain dB", "+.2f"),
    ("cubic_ssim", "cubic SSIM", ".4f"),
    ("ssim", "medsr SSIM", ".4f"),
    ("steps", "steps", "d"),
    ("wall_s", "wall s", ".0f"),
]


def suite(args) -> None:
    names = args.cases
    print(f"\ntraining steps {args.steps or 'default'}, budget {args.budget or 'default'} s\n")
    print(table([], SUITE_COLUMNS))
    for name in names:
        case = load_case(**SUITE[name])
        cubic = next(r for r in baselines(case) if r["method"] == "cubic B-spline")
        out, facts = run_medsr(
            case, threads=args.threads, steps=args.steps, budget_s=args.budget, seed=args.seed
        )
        row = {"case": name, **facts, **score(case, out), "cubic": cubic["psnr"], "cubic_ssim": cubic["ssim"]}
        row["gain"] = row["psnr"] - cubic["psnr"]
        print(table([row], SUITE_COLUMNS).splitlines()[-1], flush=True)
        if "psnr_clean" in row:
            cap = score(case, case["clean"])  # the noise-free volume itself, scored against the noisy one
            print(
                f"  ({name}: against the noise-free volume cubic {cubic['psnr_clean']:.2f} dB / SSIM "
                f"{cubic['ssim_clean']:.4f}, medsr {row['psnr_clean']:.2f} dB / {row['ssim_clean']:.4f}, gain "
                f"{row['psnr_clean'] - cubic['psnr_clean']:+.2f} dB; the noise-free volume itself scores "
                f"{cap['psnr']:.2f} dB / {cap['ssim']:.4f} against the noisy reference, "
                f"{cap['psnr'] - cubic['psnr']:+.2f} dB over cubic)",
                flush=True,
            )


def pick(parser: argparse.ArgumentParser, option: str, text: str | None, known: dict) -> list[str]:
    """Names from a comma list (all of ``known`` when None); an unknown name is a usage error."""
    names = [n.strip() for n in text.split(",") if n.strip()] if text else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(map(repr, unknown))}; choose from: {'; '.join(known)}")
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volume", default="t1", help="t1, gm, wm (nilearn MNI152 1 mm) or ct (synthetic, HU)")
    p.add_argument("--axis", type=int, default=None, help="array axis to thin (default: S-I)")
    p.add_argument("--spacing", type=float, default=None, help="simulated slice spacing, mm (default 4)")
    p.add_argument("--thickness", type=float, default=None, help="slice profile FWHM, mm (default: spacing)")
    p.add_argument("--profile", default="gaussian", help="simulated slice profile: gaussian or boxcar")
    p.add_argument("--assume-profile", default=None, help="profile medsr is told (default: --profile)")
    p.add_argument("--psf", type=float, default=0.0, help="blur the HR volume first: Gaussian FWHM, mm")
    p.add_argument("--noise", default=None, help="noise model for the LR volume, e.g. rician:30, gaussian:20")
    p.add_argument(
        "--hr-noise", default=None, help="noise of the HR volume itself (the reference), e.g. rician:20"
    )
    p.add_argument("--steps", type=int, default=None, help="training steps (default: medsr's default)")
    p.add_argument("--budget", type=float, default=None, help="training budget, s")
    p.add_argument("--seed", type=int, default=0, help="medsr's training seed")
    p.add_argument("--threads", type=int, default=0, help="torch threads for medsr (0: torch default)")
    p.add_argument("--ablation", action="store_true", help="compare design variants")
    p.add_argument("--variants", default=None, help=f"comma list from: {', '.join(ABLATIONS)}")
    p.add_argument("--suite", action="store_true", help="robustness suite over volumes, axes, factors")
    p.add_argument("--cases", default=None, help=f"comma list from: {', '.join(SUITE)}")
    p.add_argument("--json", default=None, help="also write the main table's rows as JSON here")
    args = p.parse_args()
    args.variants = pick(p, "--variants", args.variants, ABLATIONS)
    args.cases = pick(p, "--cases", args.cases, SUITE)
    if args.suite:
        suite(args)
        return
    case = load_case(
        args.volume,
        args.axis,
        args.spacing,
        args.thickness,
        args.noise,
        args.profile,
        args.assume_profile,
        args.psf,
        args.hr_noise,
    )
    if args.ablation:
        ablation(case, args)
    else:
        main_table(case, args)


if __name__ == "__main__":
    main()
