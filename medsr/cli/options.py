"""Typer parameter types shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
