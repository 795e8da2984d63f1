"""``medsr infer SCAN``: upscale one scan, or a batch from a folder or manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medsr.cli.options import Axis, Dtype, Overwrite, Scan, Series, VolumeIndex

if TYPE_CHECKING:
    from medsr.jobs.options import InferOptions

DEFAULT_METHOD = "selfsup"


def infer(
    scan: Scan,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Output file/series folder (batch: output folder).", show_default=False
        ),
    ] = None,
    factor: Annotated[
        float | None, typer.Option("--factor", help="Upscaling factor along the slice axis.")
    ] = None,
    spacing: Annotated[float | None, typer.Option("--spacing", help="Target slice spacing in mm.")] = None,
    axis: Axis = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="selfsup (learn from the scan), bspline (cubic B-spline; also --method cubic), linear or nearest "
            "(default: selfsup, or the --model checkpoint).",
            show_default=False,
        ),
    ] = None,
    thickness: Annotated[
        float | None,
        typer.Option(
            "--thickness",
            help="Slice profile FWHM in mm (default: a sidecar's or DICOM SliceThickness, else the spacing "
            "unless the slices look thinner).",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="selfsup: slice profile shape, gaussian or boxcar (thick slices averaged from thin ones), "
            "or mixed when the shape is unknown (learns both; docs/performance.md) "
            "(default: a medsr simulate sidecar's, else gaussian, or the --model's own).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", exists=True, help="Checkpoint from medsr train or --save-model.")
    ] = None,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Keep the per-scan network (selfsup) here.")
    ] = None,
    budget: Annotated[float | None, typer.Option("--budget", help="Training time budget in seconds.")] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Training steps (with or instead of --budget).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Random seed for training.")] = 0,
    dtype: Dtype = None,
    overwrite: Overwrite = False,
    series: Series = None,
    volume_index: VolumeIndex = None,
    preview: Annotated[Path | None, typer.Option("--preview", help="Write a before/after PNG panel.")] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="Batch only: process shard K/N.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Upscale the through-plane axis of SCAN; writes <stem>_medsr.nii.gz (or <folder>_medsr/) beside it.

    SCAN may also be a folder of scans or a manifest (.csv/.jsonl): then -o names the output folder,
    finished scans are skipped, failures are reported and the exit code is 1 if any scan failed.
    """
    from medsr.inference.predict import slice_assumption
    from medsr.io.naming import read_sidecar, sidecar_path
    from medsr.jobs.infer import collect_inputs, infer_batch, infer_one, is_batch, select_shard

    opts = infer_options(
        method=method,
        model=model,
        factor=factor,
        spacing=spacing,
        axis=axis,
        thickness=thickness,
        profile=profile,
        budget=budget,
        steps=steps,
        device=device,
        seed=seed,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
        save_model=save_model,
        series=series,
        volume_index=volume_index,
        preview=preview,
    )
    if not is_batch(scan):
        if shard:
            typer.echo("medsr: note: --shard applies to batches only; ignored", err=True)
        written = infer_one(scan, output, opts)
        facts = read_sidecar(sidecar_path(written))
        if facts.get("method") == "selfsup" and not facts.get("model_loaded"):
            typer.echo(f"medsr: {slice_assumption(facts)}", err=True)
        typer.echo(f"wrote {written}")
        return
    if output is None:
        output = scan.parent / f"{scan.name.split('.')[0]}_medsr"
    scans = select_shard(collect_inputs(scan), shard)
    report = f"medsr_batch_{shard.replace('/', '_of_')}.json" if shard else "medsr_batch.json"
    summary = infer_batch(scans, output, opts, report=report, progress=progress)
    redone = f" ({len(summary.redone)} redone)" if summary.redone else ""
    typer.echo(
        f"batch: {len(summary.done)} written{redone}, {len(summary.skipped)} skipped (already done), "
        f"{len(summary.failed)} failed; report {output / report}"
    )
    for path, reason in summary.redone:
        typer.echo(f"  redone: {path.name} ({reason})")
    for path, reason in summary.failed:
        typer.echo(f"  failed: {path}: {reason}", err=True)
    if summary.failed:
        raise typer.Exit(1)


def infer_options(
    *,
    method: str | None,
    model: Path | None,
    factor: float | None,
    spacing: float | None,
    axis: str | None,
    thickness: float | None,
    profile: str | None,
    budget: float | None,
    steps: int | None,
    device: str,
    seed: int,
    dtype: str,
    overwrite: bool,
    progress: bool,
    save_model: Path | None = None,
    series: str | None = None,
    volume_index: int | None = None,
    preview: Path | None = None,
) -> InferOptions:
    """The infer job's options from command-line values (shared by ``medsr infer`` and ``medsr bids``)."""
    from medsr.inference.interpolate import canonical_method
    from medsr.inference.predict import refuse_profile
    from medsr.jobs.options import InferOptions
    from medsr.runtime.device import resolve_device

    resolve_device(device)  # every method (bspline too): before any scan is read, once for a batch
    if method is None:
        method = "model" if model is not None else DEFAULT_METHOD
    method = canonical_method(method)  # --method cubic is bspline, and recorded so
    learner: dict[str, object] = {}
    if method == "selfsup" or model is not None:
        learner = {"budget_s": budget, "steps": steps, "device": device, "seed": seed, "progress": progress}
        if save_model is not None:
            learner["save_model"] = save_model
    if profile is not None:
        refuse_profile(method, profile)  # before any scan is read: a batch would fail every one
        learner["profile"] = profile
    return InferOptions(
        factor=factor,
        spacing=spacing,
        axis=axis,
        method=method,
        thickness=thickness,
        model=model,
        dtype=dtype,
        overwrite=overwrite,
        series=series,
        volume_index=volume_index,
        preview=preview,
        learner=learner,
    )
