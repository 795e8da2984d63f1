"""``medsr train CONFIG -o RUN``: train a 3-D model from a data manifest (docs/training.md).

Also ``medsr train --resume RUN`` (continue a run), ``--init CKPT`` (fine-tune from a checkpoint) and
``torchrun --nproc_per_node N -m medsr train ...`` (DistributedDataParallel, one process per device).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, help="YAML config (see configs/).", show_default=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Run folder to create.", show_default=False)
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config key, e.g. --set train.lr=1e-4 (repeatable).", show_default=False
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", file_okay=False, help="Continue the run in this folder.", show_default=False
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init", exists=True, dir_okay=False, help="Fine-tune from this checkpoint.", show_default=False
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train a through-plane SR network on simulated thick-slice pairs; writes RUN/best.safetensors."""
    from medsr.errors import MedsrError
    from medsr.training.config import load_config
    from medsr.training.loop import train as run_training

    if resume is not None:
        if config is not None or output is not None:
            raise MedsrError(
                "--resume RUN continues that run with its own config.yaml: give no CONFIG and no -o"
            )
        if not (resume / "config.yaml").is_file():
            raise MedsrError(f"{resume}: no config.yaml here; --resume takes the folder of a medsr train run")
        run_dir, cfg = resume, load_config(resume / "config.yaml", overrides or ())
    else:
        if config is None or output is None:
            raise MedsrError("give a CONFIG file and -o RUN_FOLDER (or --resume RUN to continue a run)")
        run_dir, cfg = output, load_config(config, overrides or ())
    summary = run_training(cfg, run_dir, resume=resume is not None, init=init, progress=progress)
    if os.environ.get("RANK", "0") != "0":
        return
    val = summary.get("final_validation") or {}
    line = f"trained {summary['steps']} steps in {summary['seconds']:.0f} s"
    if val:
        line += f"; validation PSNR {val['val_psnr']:.2f} dB (cubic {val['val_psnr_cubic']:.2f} dB)"
    typer.echo(line)
    best = run_dir / "best.safetensors"
    typer.echo(f"checkpoint: {best if best.exists() else run_dir / 'last.safetensors'}")
