"""``medsr simulate HR``: thick-slice simulation of an HR volume (LR volume + JSON sidecar)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsr.cli.options import Axis, Overwrite, Scan, Series, VolumeIndex
from medsr.profiles import DEFAULT_PROFILE


def simulate(
    scan: Scan,
    thickness: Annotated[
        float, typer.Option("--thickness", help="Slice thickness in mm (FWHM of the slice profile).")
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="LR output file or DICOM series folder.", show_default=False),
    ] = None,
    spacing: Annotated[
        float | None,
        typer.Option("--spacing", help="Centre-to-centre slice spacing in mm (default: the thickness)."),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", help="Slice profile: gaussian or boxcar.")
    ] = DEFAULT_PROFILE,
    noise: Annotated[
        str | None,
        typer.Option("--noise", help="gaussian:SIGMA (image units, e.g. HU) or rician:SNR (magnitude MRI)."),
    ] = None,
    axis: Axis = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the noise draws.")] = 0,
    overwrite: Overwrite = False,
    series: Series = None,
    volume_index: VolumeIndex = None,
) -> None:
    """Simulate thick slices from SCAN; writes <stem>_lr.nii.gz (or <folder>_lr/) and a .json sidecar.

    Without --axis, slices are cut along the thickest axis (the axis closest to S if SCAN is isotropic).
    """
    from medsr.jobs.simulate_file import simulate_file

    out, sidecar = simulate_file(
        scan,
        output,
        thickness=thickness,
        spacing=spacing,
        axis=axis,
        profile=profile,
        noise=noise,
        seed=seed,
        overwrite=overwrite,
        series=series,
        volume_index=volume_index,
    )
    typer.echo(f"wrote {out} and {sidecar}")
