"""Typer parameter types and command classes shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup


class FlagsWithoutType:
    """Help lists a flag (``--overwrite``, ``--progress/--no-progress``, ``--help``) without a type.

    typer's rich help asks every option for its type and prints ``<bool>`` after flags, which take no
    value (its plain help skips them); an empty metavar is typer's way to show no type. Every medsr
    command and group uses this (tests/test_cli_help.py walks them all).
    """

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class MedsrCommand(FlagsWithoutType, TyperCommand):
    """A medsr command (``app.command(..., cls=MedsrCommand)``)."""


class MedsrSubGroup(FlagsWithoutType, TyperGroup):
    """A group of medsr sub-commands (``typer.Typer(cls=MedsrSubGroup)``)."""


Scan = Annotated[
    Path,
    typer.Argument(exists=True, help="NIfTI/NRRD/MHA file or DICOM series folder.", show_default=False),
]
Series = Annotated[
    str | None, typer.Option("--series", help="SeriesInstanceUID when a folder holds several.")
]
VolumeIndex = Annotated[
    int | None, typer.Option("--volume-index", help="Volume of a 4-D input to use (0-based).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Dtype = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="Output voxel type: float32 or input (the input's stored type). Default: float32, except a "
        "DICOM series written from a DICOM series, which keeps the source's integer storage and rescale.",
        show_default=False,
    ),
]
Axis = Annotated[
    str | None, typer.Option("--axis", help="Array axis 0/1/2 or world direction R/A/S (default: thickest).")
]
Factor = Annotated[float | None, typer.Option("--factor", help="Upscaling factor along the slice axis.")]
Spacing = Annotated[float | None, typer.Option("--spacing", help="Target slice spacing in mm.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed for training.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
#: The selfsup options of the pipeline entry points (medsr bids, medsr dicom-node).
TrainedModel = Annotated[
    Path | None, typer.Option("--model", exists=True, help="Checkpoint from medsr train.")
]
Budget = Annotated[float | None, typer.Option("--budget", help="selfsup training budget in seconds.")]
Steps = Annotated[int | None, typer.Option("--steps", help="selfsup training steps.")]
