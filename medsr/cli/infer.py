"""``medsr infer SCAN``: upscale one scan, or a batch from a folder or manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medsr.cli.options import (
    Axis,
    Device,
    Dtype,
    Factor,
    Overwrite,
    Progress,
    Scan,
    Seed,
    Series,
    Spacing,
    VolumeIndex,
)

if TYPE_CHECKING:
    from medsr.jobs.infer import BatchSummary

Output = Annotated[
    Path | None,
    typer.Option(
        "-o", "--output", help="Output file/series folder (batch: output folder).", show_default=False
    ),
]
Method = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="selfsup (learn from the scan), bspline (cubic B-spline; also --method cubic), linear or nearest "
        "(default: selfsup, or the --model checkpoint).",
        show_default=False,
    ),
]
Thickness = Annotated[
    float | None,
    typer.Option(
        "--thickness",
        help="Slice profile FWHM in mm (default: a sidecar's or DICOM SliceThickness, else the spacing "
        "unless the slices look thinner).",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="selfsup: slice profile shape, gaussian or boxcar (thick slices averaged from thin ones), "
        "or mixed when the shape is unknown (learns both; docs/performance.md) "
        "(default: a medsr simulate sidecar's, else gaussian, or the --model's own).",
        show_default=False,
    ),
]
Model = Annotated[
    Path | None, typer.Option("--model", exists=True, help="Checkpoint from medsr train or --save-model.")
]
SaveModel = Annotated[
    Path | None, typer.Option("--save-model", help="Keep the per-scan network (selfsup) here.")
]
Budget = Annotated[float | None, typer.Option("--budget", help="Training time budget in seconds.")]
Steps = Annotated[int | None, typer.Option("--steps", help="Training steps (with or instead of --budget).")]
Preview = Annotated[Path | None, typer.Option("--preview", help="Write a before/after PNG panel.")]
Shard = Annotated[str | None, typer.Option("--shard", help="Batch only: process shard K/N.")]


def infer(
    scan: Scan,
    output: Output = None,
    factor: Factor = None,
    spacing: Spacing = None,
    axis: Axis = None,
    method: Method = None,
    thickness: Thickness = None,
    profile: Profile = None,
    model: Model = None,
    save_model: SaveModel = None,
    budget: Budget = None,
    steps: Steps = None,
    device: Device = "auto",
    seed: Seed = 0,
    dtype: Dtype = None,
    overwrite: Overwrite = False,
    series: Series = None,
    volume_index: VolumeIndex = None,
    preview: Preview = None,
    shard: Shard = None,
    progress: Progress = True,
) -> None:
    """Upscale the through-plane axis of SCAN; writes <stem>_medsr.nii.gz (or <folder>_medsr/) beside it.

    SCAN may also be a folder of scans or a manifest (.csv/.jsonl): then -o names the output folder,
    finished scans are skipped, failures are reported and the exit code is 1 if any scan failed.
    """
    from medsr.jobs.infer import collect_inputs, infer_batch, infer_one, infer_options, is_batch, select_shard

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
        _report_one(infer_one(scan, output, opts))
        return
    if output is None:
        output = scan.parent / f"{scan.name.split('.')[0]}_medsr"
    scans = select_shard(collect_inputs(scan), shard)
    report = f"medsr_batch_{shard.replace('/', '_of_')}.json" if shard else "medsr_batch.json"
    summary = infer_batch(scans, output, opts, report=report, progress=progress)
    _report_batch(summary, output / report)


def _report_one(written: Path) -> None:
    """``wrote PATH``, after the slice assumption a selfsup run made (stderr)."""
    from medsr.inference.predict import slice_assumption
    from medsr.io.naming import read_sidecar, sidecar_path

    facts = read_sidecar(sidecar_path(written))
    if facts.get("method") == "selfsup" and not facts.get("model_loaded"):
        typer.echo(f"medsr: {slice_assumption(facts)}", err=True)
    typer.echo(f"wrote {written}")


def _report_batch(summary: BatchSummary, report: Path) -> None:
    """One line of counts, a line per redone and failed scan; exit code 1 when any failed."""
    redone = f" ({len(summary.redone)} redone)" if summary.redone else ""
    typer.echo(
        f"batch: {len(summary.done)} written{redone}, {len(summary.skipped)} skipped (already done), "
        f"{len(summary.failed)} failed; report {report}"
    )
    for path, reason in summary.redone:
        typer.echo(f"  redone: {path.name} ({reason})")
    for path, reason in summary.failed:
        typer.echo(f"  failed: {path}: {reason}", err=True)
    if summary.failed:
        raise typer.Exit(1)
