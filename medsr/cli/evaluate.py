"""``medsr evaluate SR [HR]``: full-reference metrics against HR, or a no-reference report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsr.cli.options import Axis, Overwrite, Scan


def evaluate(
    sr: Scan,
    hr: Annotated[
        Path | None,
        typer.Argument(
            exists=True, help="HR reference; omit it for a no-reference report.", show_default=False
        ),
    ] = None,
    mask: Annotated[
        str,
        typer.Option(
            "--mask", help="auto (Otsu foreground, edge slabs dropped), none, or a mask volume file."
        ),
    ] = "auto",
    axis: Axis = None,
    factor: Annotated[
        float | None,
        typer.Option("--factor", help="Upscaling factor of SR (sets the edge slab; default: SR's sidecar)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Also write the JSON report here.", show_default=False),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Compare SR with HR in world coordinates (PSNR, SSIM, NRMSE, edge sharpness), or judge SR alone.

    SR is resampled onto HR's grid through both affines when the grids differ; the grid offset is
    reported. The upscaled axis and factor come from SR's sidecar (<stem>.json written by medsr infer),
    else --axis/--factor, else the thickest axis (the axis closest to S for isotropic voxels).
    """
    from medsr.evaluation.report import dumps, evaluation_text, save_json
    from medsr.jobs.evaluate_files import evaluate_files

    result = evaluate_files(sr, hr, mask=mask, axis=axis, factor=factor)
    if output is not None:
        from medsr.io.atomic import check_output

        check_output(output, overwrite=overwrite, inputs=(sr, *([hr] if hr else [])))
        save_json(output, result, overwrite=overwrite)
    typer.echo(dumps(result) if as_json else evaluation_text(result))
