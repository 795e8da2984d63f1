"""``medsr bids BIDS_DIR OUTPUT_DIR participant|group``: the BIDS App (docs/pipelines.md)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medsr.cli.options import (
    Budget,
    Device,
    Dtype,
    Factor,
    MedsrCommand,
    Overwrite,
    Progress,
    Seed,
    Spacing,
    Steps,
    TrainedModel,
)

if TYPE_CHECKING:
    from medsr.jobs.bids import BidsSummary


class Level(str, Enum):
    participant = "participant"
    group = "group"


#: Options that take several values after one flag, as BIDS Apps do (``--participant-label 01 02``).
MANY_VALUED = ("--participant-label", "--participant_label", "--suffix")


class ManyValuesCommand(MedsrCommand):
    """A command whose MANY_VALUED options also accept ``--opt a b c`` (typer wants ``--opt a --opt b``)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(args, MANY_VALUED))


def spread_values(args: list[str], options: tuple[str, ...]) -> list[str]:
    """``[--o, a, b]`` -> ``[--o, a, --o, b]`` for each option in ``options``; other arguments unchanged.

    Values run until the next argument that starts with ``-`` (or ``--``, which ends option parsing).
    """
    out: list[str] = []
    current: str | None = None  # the many-valued option whose values are being read
    has_value = False
    for arg in args:
        if arg == "--":
            current = None
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            current, has_value = (name, "=" in arg) if name in options else (None, False)
        elif current is not None:
            if has_value:
                out.append(current)
            has_value = True
        out.append(arg)
    return out


def bids(
    ctx: typer.Context,
    bids_dir: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="Root of the BIDS dataset.", show_default=False),
    ],
    output_dir: Annotated[
        Path,
        typer.Argument(
            help="Derivative dataset to write (e.g. BIDS_DIR/derivatives/medsr).", show_default=False
        ),
    ],
    analysis_level: Annotated[
        Level,
        typer.Argument(help="participant: upscale images; group: table of all outputs.", show_default=False),
    ],
    participant_label: Annotated[
        list[str] | None,
        typer.Option(
            "--participant-label",
            "--participant_label",
            help="Subjects to process (01 or sub-01; default all).",
        ),
    ] = None,
    suffix: Annotated[
        list[str] | None,
        typer.Option("--suffix", help="Image suffixes to process (default T1w T2w FLAIR PDw T2starw)."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="As medsr infer: selfsup (default), bspline, linear, nearest."),
    ] = None,
    factor: Factor = None,
    spacing: Spacing = None,
    thickness: Annotated[
        float | None,
        typer.Option(
            "--thickness", help="Slice profile FWHM in mm (default: the JSON sidecars' SliceThickness)."
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="selfsup: gaussian, boxcar or mixed.")
    ] = None,
    model: TrainedModel = None,
    budget: Budget = None,
    steps: Steps = None,
    device: Device = "auto",
    seed: Seed = 0,
    dtype: Dtype = None,
    overwrite: Overwrite = False,
    include_3d: Annotated[
        bool, typer.Option("--include-3d", help="Also upscale 3D acquisitions (MRAcquisitionType 3D).")
    ] = False,
    progress: Progress = True,
) -> None:
    """BIDS App: upscale the thick-slice anatomical images of BIDS_DIR into the derivative OUTPUT_DIR.

    participant: each sub-*/anat or sub-*/ses-*/anat image *_<suffix>.nii(.gz) with slices coarser than
    in-plane becomes *_rec-medsr_<suffix>.nii.gz with a JSON sidecar; finished images are skipped,
    failures are reported and the exit code is 1 if any failed. group: writes OUTPUT_DIR/medsr_group.tsv.
    """
    from medsr.jobs import bids as job

    if analysis_level is Level.group:
        _note_ignored(ctx)
        table, rows = job.run_group(output_dir)
        typer.echo(f"group: {rows} outputs in {table}")
        return
    from medsr.jobs.bids_layout import DEFAULT_SUFFIXES
    from medsr.jobs.infer import infer_options

    opts = infer_options(
        method=method,
        model=model,
        factor=factor,
        spacing=spacing,
        axis=None,
        thickness=thickness,
        profile=profile,
        budget=budget,
        steps=steps,
        device=device,
        seed=seed,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
    )
    summary = job.run_participant(
        bids_dir,
        output_dir,
        opts,
        labels=participant_label,
        suffixes=tuple(suffix or DEFAULT_SUFFIXES),
        include_3d=include_3d,
        progress=progress,
    )
    _report(summary, output_dir)


def _report(summary: BidsSummary, output_dir: Path) -> None:
    """One line of counts, a line per redone, not upscaled and noted image; exit code 1 when any failed."""
    redone = f" ({len(summary.redone)} redone)" if summary.redone else ""
    typer.echo(
        f"bids: {len(summary.done)} written{redone}, {len(summary.skipped)} skipped (already done), "
        f"{len(summary.ignored)} not upscaled, {len(summary.failed)} failed; outputs in {output_dir}"
    )
    for label, items in (
        ("redone", summary.redone),
        ("not upscaled", summary.ignored),
        ("note", summary.notes),
    ):
        for path, reason in items:
            typer.echo(f"  {label}: {path} ({reason})")
    for path, reason in summary.failed:
        typer.echo(f"  failed: {path}: {reason}", err=True)
    if summary.failed:
        raise typer.Exit(1)


def _note_ignored(ctx: typer.Context) -> None:
    """The group level only reads the outputs' sidecars: say which given options it does not use."""
    given = [
        param.opts[0]
        for param in ctx.command.params
        if isinstance(param, typer.core.TyperOption)
        and param.name != "progress"
        and getattr(ctx.get_parameter_source(param.name), "name", "") == "COMMANDLINE"
    ]
    if given:
        typer.echo(
            f"medsr: note: the group level only tabulates finished outputs; ignored: {' '.join(given)}",
            err=True,
        )
