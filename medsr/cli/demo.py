"""``medsr demo``: run the main job on a real scan that ships with medsr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsr.cli.options import Overwrite, Progress


def demo(
    outdir: Annotated[Path, typer.Option("-o", "--output", help="Folder for the demo outputs.")] = Path(
        "medsr_demo"
    ),
    method: Annotated[
        str, typer.Option("--method", help="selfsup, bspline (also cubic), linear or nearest.")
    ] = "selfsup",
    budget: Annotated[
        float | None, typer.Option("--budget", help="selfsup training budget, seconds.")
    ] = None,
    overwrite: Overwrite = False,
    progress: Progress = True,
) -> None:
    """Simulate 4 mm axial slices from the bundled 1 mm MNI152 T1, upscale x4, write NIfTI + PNG panel."""
    from medsr.inference.options import SelfSupOptions
    from medsr.jobs.demo import run_demo

    learner = SelfSupOptions(budget_s=budget, progress=progress) if method == "selfsup" else None
    paths = run_demo(outdir, method=method, overwrite=overwrite, learner=learner)
    for key in ("lr", "sr", "panel"):
        typer.echo(f"wrote {paths[key]}")
