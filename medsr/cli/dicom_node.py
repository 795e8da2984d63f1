"""``medsr dicom-node``: receive series by C-STORE, upscale each with the infer job, send it on."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from medsr.cli.options import Budget, Device, Dtype, Factor, Seed, Spacing, Steps, TrainedModel


def dicom_node(
    workdir: Annotated[
        Path,
        typer.Option(
            "--workdir",
            help="Folder for incoming/, work/, outbox/ and failed/ (created if needed).",
            file_okay=False,
            show_default=False,
        ),
    ],  # fmt: skip
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 11112,
    ae_title: Annotated[str, typer.Option("--ae-title", help="This node's AE title.")] = "MEDSR",
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; 0.0.0.0 for every interface (DICOM has no authentication)."
        ),
    ] = "127.0.0.1",
    forward: Annotated[
        str | None,
        typer.Option(
            "--forward",
            help="Send results to HOST:PORT:AET (default: keep them in outbox/).",
            show_default=False,
        ),
    ] = None,
    idle_seconds: Annotated[
        float, typer.Option("--idle-seconds", help="A series is complete this long after its last instance.")
    ] = 10.0,
    retry_max_seconds: Annotated[
        float, typer.Option("--retry-max-seconds", help="Longest wait between tries to send a series.")
    ] = 60.0,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="selfsup, bspline, linear or nearest (default: selfsup, or the --model checkpoint).",
            show_default=False,
        ),
    ] = None,  # fmt: skip
    factor: Factor = None,
    spacing: Spacing = None,
    thickness: Annotated[float | None, typer.Option("--thickness", help="Slice profile FWHM in mm.")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="selfsup: gaussian, boxcar or mixed.", show_default=False)
    ] = None,
    model: TrainedModel = None,
    budget: Budget = None,
    steps: Steps = None,
    device: Device = "auto",
    seed: Seed = 0,
    dtype: Dtype = None,
) -> None:
    """Run a DICOM storage node: CT/MR series sent to it are upscaled and sent to --forward.

    A series is complete when no instance of it arrived for --idle-seconds after its association
    ended. Results stay in WORKDIR/outbox until every instance was stored by --forward; series that fail
    go to WORKDIR/failed with reason.txt. Stop with SIGTERM or Ctrl-C; the next start resumes.
    """
    from medsr.errors import MedsrError
    from medsr.inference.predict import METHODS
    from medsr.jobs.dicom_node import Destination, NodeConfig, run_node
    from medsr.jobs.dicom_node.forward import check_ae_title
    from medsr.jobs.infer import infer_options

    check_ae_title(ae_title, "--ae-title")
    if not 0 < port < 65536:
        raise MedsrError(f"--port {port} must be between 1 and 65535 (DICOM's own port is 104, often 11112)")
    if idle_seconds < 0 or retry_max_seconds <= 0:
        raise MedsrError("--idle-seconds must be >= 0 and --retry-max-seconds > 0")
    opts = infer_options(
        method=method, model=model, factor=factor, spacing=spacing, axis=None, thickness=thickness,
        profile=profile, budget=budget, steps=steps, device=device, seed=seed, dtype=dtype,
        overwrite=False, progress=False,
    )  # fmt: skip
    if opts.method not in METHODS:
        raise MedsrError(f"--method {opts.method!r} is not one of {', '.join(METHODS)}")
    if opts.method == "model" and model is None:
        raise MedsrError("--method model needs --model CHECKPOINT (from medsr train)")
    config = NodeConfig(
        workdir=workdir, port=port, ae_title=ae_title, host=host, idle_seconds=idle_seconds,
        forward=Destination.parse(forward) if forward else None, retry_max_seconds=retry_max_seconds,
    )  # fmt: skip
    _log_to_stderr()
    run_node(config, opts)


def _log_to_stderr() -> None:
    """One timestamped line per event on stderr; pynetdicom's own log stays silent."""
    log = logging.getLogger("medsr.dicom_node")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s medsr dicom-node: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
