"""``medsr benchmark HR``: simulate thick slices, upscale with each method, report and draw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsr.cli.options import Axis, Overwrite, Scan
from medsr.profiles import DEFAULT_PROFILE


def benchmark(
    scan: Scan,
    outdir: Annotated[Path, typer.Option("-o", "--output", help="Output folder for volumes, reports, PNGs.")],
    factor: Annotated[
        float, typer.Option("--factor", help="LR slice spacing in HR voxels (= upscaling).")
    ] = 4.0,
    thickness: Annotated[
        float | None,
        typer.Option("--thickness", help="Slice profile FWHM in mm (default: the slice spacing)."),
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="Simulated slice profile, gaussian or boxcar; selfsup is told the same.",
        ),
    ] = DEFAULT_PROFILE,
    axis: Axis = None,
    methods: Annotated[
        str,
        typer.Option(
            "--methods", help="Comma list: nearest, linear, bspline (also cubic), selfsup, model:CKPT."
        ),
    ] = "nearest,linear,bspline",
    budget: Annotated[
        float | None, typer.Option("--budget", help="selfsup/model training budget, seconds.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="selfsup training steps.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (learned methods).")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of noise and training.")] = 0,
    noise: Annotated[
        str | None, typer.Option("--noise", help="Simulated noise: gaussian:SIGMA or rician:SNR.")
    ] = None,
    mask: Annotated[str, typer.Option("--mask", help="auto (Otsu foreground) or none.")] = "auto",
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="Panel window: percentile, or CT soft, brain, bone, lung (default: auto)."
        ),
    ] = None,
    isolate: Annotated[
        bool,
        typer.Option("--isolate/--in-process", help="Run each method in a fresh process (measures memory)."),
    ] = True,
    overwrite: Overwrite = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a line per method and training progress.")
    ] = True,
) -> None:
    """Simulate a thick-slice scan from SCAN (an HR volume), upscale it with each method and compare.

    Writes into -o: lr.nii.gz, sr_<method>.nii.gz, report.json, report.md (PSNR, SSIM, NRMSE, edge
    sharpness, time, peak memory per method) and panel_{axial,coronal,sagittal}.png (LR, each method,
    HR and absolute-error maps in one window). Without --axis: the thickest axis, else the one closest to S.
    """
    from medsr.inference.options import SelfSupOptions
    from medsr.jobs.benchmark import BenchmarkOptions, parse_methods, run_benchmark
    from medsr.runtime.device import resolve_device

    resolve_device(device)  # every method, before the scan is read
    specs = parse_methods(methods)
    opts = BenchmarkOptions(
        factor=factor,
        thickness=thickness,
        profile=profile.strip().lower(),
        axis=axis,
        methods=tuple(specs),
        mask=mask,
        noise=noise,
        window=window,
        selfsup=SelfSupOptions(budget_s=budget, steps=steps, device=device, seed=seed),
        isolate=isolate,
        overwrite=overwrite,
        progress=progress,
    )
    command = _command(scan, outdir, factor, thickness, opts.profile, axis, methods, budget, noise)
    result = run_benchmark(scan, outdir, opts, command=command)
    from medsr.evaluation.report import benchmark_table

    typer.echo(benchmark_table(result["methods"]))
    typer.echo(f"wrote {outdir / 'report.md'}, {outdir / 'report.json'} and {len(result['panels'])} panels")
    if any(row.get("error") for row in result["methods"]):
        raise typer.Exit(1)


def _command(scan, outdir, factor, thickness, profile, axis, methods, budget, noise) -> str:
    parts = ["medsr benchmark", str(scan), f"--factor {factor:g}"]
    parts += [f"--thickness {thickness:g}"] if thickness is not None else []
    parts += [f"--profile {profile}"] if profile != DEFAULT_PROFILE else []
    parts += [f"--axis {axis}"] if axis is not None else []
    parts += [f"--methods {methods}", *([f"--budget {budget:g}"] if budget is not None else [])]
    parts += [f"--noise {noise}"] if noise else []
    return " ".join([*parts, f"-o {outdir}"])
