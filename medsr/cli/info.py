"""``medsr info SCAN``: geometry and intensities of a volume."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from medsr.cli.options import Scan, Series, VolumeIndex


def info(
    scan: Scan,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    series: Series = None,
    volume_index: VolumeIndex = None,
) -> None:
    """Print format, shape, spacing (mm), orientation, through-plane axis, anisotropy and intensities."""
    from medsr.io.describe import describe, format_description
    from medsr.io.readers import load_volume

    summary = describe(load_volume(scan, series=series, volume_index=volume_index))
    typer.echo(json.dumps(summary, indent=2) if as_json else format_description(summary))
