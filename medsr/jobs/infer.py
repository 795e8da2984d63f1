"""File-level jobs behind ``medsr infer``: one scan, or a batch from a folder or manifest."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medsr.errors import MedsrError
from medsr.io.atomic import discard, write_json
from medsr.io.formats import DICOM_SUFFIXES, MANIFEST_SUFFIXES, VOLUME_SUFFIXES, holds_dicom, looks_dicom
from medsr.io.naming import check_sidecar, default_output, sha256_of, sidecar_path
from medsr.jobs.options import InferOptions
from medsr.jobs.rerun import SETTINGS_KEY, input_sidecar_sha256, is_finished, requested_settings

#: --method when neither --method nor --model is given.
DEFAULT_METHOD = "selfsup"


def infer_one(scan: Path, output: Path | None, opts: InferOptions) -> Path:
    """Upscale one scan and write it with a JSON sidecar; returns the output path.

    Everything that could refuse (output, sidecar and preview paths) is checked before the work; if the
    preview or sidecar then fails, the output is removed again: an output without its sidecar is unfinished.
    """
    from medsr import __version__
    from medsr.inference.predict import upscale
    from medsr.io.atomic import check_output
    from medsr.io.readers import load_volume
    from medsr.io.writers import check_dtype, output_format, resolve_dtype, save_volume

    check_device(opts)
    output = output if output is not None else default_output(scan)
    check_dtype(opts.dtype)  # before any work: training can take minutes
    output_format(output)
    check_output(output, overwrite=opts.overwrite, inputs=(scan,))
    sidecar = check_sidecar(output, overwrite=opts.overwrite)
    if opts.preview is not None:
        check_output(opts.preview, overwrite=opts.overwrite, inputs=(scan,))
    start = time.perf_counter()
    volume = load_volume(scan, series=opts.series, volume_index=opts.volume_index)
    result = upscale(
        volume,
        factor=opts.factor,
        spacing=opts.spacing,
        axis=opts.axis,
        method=opts.method,
        thickness=opts.thickness,
        model=opts.model,
        learner=opts.selfsup,
    )
    save_volume(result, output, dtype=opts.dtype, overwrite=opts.overwrite)
    try:
        if opts.preview is not None:
            from medsr.evaluation.figures import save_panel

            save_panel(opts.preview, {"input": volume, opts.method: result}, overwrite=opts.overwrite)
        facts = dict(result.meta.get("medsr", {}))
        facts.update(
            medsr_version=__version__,
            input=str(scan),
            input_sha256=sha256_of(scan),
            input_sidecar_sha256=input_sidecar_sha256(scan),
            output=str(output),
            input_shape=list(volume.shape[1:]),
            output_shape=list(result.shape[1:]),
            dtype=resolve_dtype(opts.dtype, output_format(output), result),
            wall_seconds=round(time.perf_counter() - start, 3),
        )
        facts[SETTINGS_KEY] = requested_settings(opts)  # what a rerun compares (medsr.jobs.rerun)
        write_json(sidecar, facts, overwrite=True)
    except BaseException:
        discard(output)
        raise
    return output


def check_device(opts: InferOptions) -> None:
    """Refuse an unusable ``device`` option (e.g. cuda without a GPU) before any scan is read."""
    from medsr.runtime.device import resolve_device

    if opts.selfsup is not None:
        resolve_device(opts.selfsup.device)


def collect_inputs(source: Path) -> list[Path]:
    """Scans to process: the rows of a manifest (.csv/.jsonl), or a folder's volume files and series folders."""
    if source.is_file():
        from medsr.io.manifest import read_manifest

        return [row.path for row in read_manifest(source)]
    found: list[Path] = []
    for entry in sorted(source.iterdir()):
        name = entry.name.lower()
        if entry.name.startswith("."):
            continue
        is_volume = entry.is_file() and name.endswith(VOLUME_SUFFIXES)
        is_series = entry.is_dir() and any(looks_dicom(f) for f in entry.rglob("*") if f.is_file())
        if is_volume or is_series:
            found.append(entry)
        elif entry.is_file() and name.endswith(DICOM_SUFFIXES):
            raise MedsrError(
                f"{source} holds DICOM files itself: give it as one scan (medsr infer {source}) or put each "
                "series in its own sub-folder for a batch"
            )
    if not found:
        raise MedsrError(f"{source}: no NIfTI/NRRD/MHA files or DICOM series folders found to process")
    return found


def is_batch(source: Path) -> bool:
    """True for a manifest file or a folder of scans; False for one volume file or one DICOM series folder."""
    if source.is_file():
        return source.name.lower().endswith(MANIFEST_SUFFIXES)
    return source.is_dir() and not holds_dicom(source)


def select_shard(items: list[Path], shard: str | None) -> list[Path]:
    """Items of shard ``K/N`` (1-based K): every N-th item starting at the K-th, for job arrays."""
    if not shard:
        return items
    try:
        k, n = (int(part) for part in shard.split("/"))
    except ValueError:
        raise MedsrError(f"--shard {shard!r} must look like K/N, e.g. 1/4 (K from 1 to N)") from None
    if n < 1 or not 1 <= k <= n:
        raise MedsrError(f"--shard {shard}: K must be between 1 and N (N >= 1)")
    return items[k - 1 :: n]


@dataclass
class BatchSummary:
    """Outcome of a batch: outputs written, skipped (already done), and failures with their reasons.

    ``redone`` names the scans among ``done`` whose earlier output was replaced, with the reason
    (:func:`medsr.jobs.rerun.is_finished`).
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    redone: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def infer_batch(
    scans: list[Path],
    outdir: Path,
    opts: InferOptions,
    *,
    report: str = "medsr_batch.json",
    progress: bool = True,
) -> BatchSummary:
    """Run :func:`infer_one` on each scan into ``outdir``; skip finished ones, carry on after failures.

    A scan is finished when its output and sidecar exist and the sidecar records the same input SHA-256
    and requested settings (:func:`medsr.jobs.rerun.is_finished`); any other earlier output (a run
    killed before its sidecar, another --factor, a changed input) is redone and listed with the reason
    in ``redone``. Any error of one scan, even an unexpected one, is recorded and the batch
    goes on; an interruption stops it. The JSON report named ``report`` lists what was done, skipped and
    failed (with the reason), and what was redone and why; it is written even when the batch is interrupted.
    """
    from rich.progress import Progress

    check_device(opts)  # once for the batch, not once per scan
    if not outdir.exists():
        outdir.mkdir(parents=True)
    summary = BatchSummary()
    names: set[Path] = set()
    sidecars: set[Path] = set()
    interrupted = True
    try:
        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task("medsr infer (batch)", total=len(scans))
            for scan in scans:
                output = default_output(scan, folder=outdir)
                if output in names or sidecar_path(output) in sidecars:
                    output = default_output(scan, tag=f"medsr_{len(names)}", folder=outdir)
                names.add(output)
                sidecars.add(sidecar_path(output))
                _run_one(scan, output, opts, summary)
                bar.advance(task)
        interrupted = False
    finally:
        write_json(
            outdir / report,
            {
                "done": [str(p) for p in summary.done],
                "skipped": [str(p) for p in summary.skipped],
                "redone": [{"input": str(p), "reason": r} for p, r in summary.redone],
                "failed": [{"input": str(p), "error": e} for p, e in summary.failed],
                "interrupted": interrupted,
            },
        )
    return summary


def _run_one(scan: Path, output: Path, opts: InferOptions, summary: BatchSummary) -> None:
    """One scan of a batch: skip it if finished, else (re)do it; the outcome goes into ``summary``."""
    try:
        run_opts, redone = rerun_plan(output, opts, lambda: is_finished(output, scan, opts))
        if run_opts is None:
            summary.skipped.append(scan)
            return
        summary.done.append(infer_one(scan, output, run_opts))
        if redone is not None:
            summary.redone.append((scan, redone))
    except Exception as err:  # one bad scan must not stop an unattended batch
        summary.failed.append((scan, reason_of(err)))


def rerun_plan(
    output: Path, opts: InferOptions, unfinished: Callable[[], str | None]
) -> tuple[InferOptions | None, str | None]:
    """What a rerun does with ``output``: (None, None) to skip it (``unfinished()`` found no reason), else
    the options to run with and, when an earlier output is replaced, the reason (the run then overwrites it).
    ``--overwrite`` redoes every output without asking ``unfinished``.
    """
    if opts.overwrite:
        return opts, None
    why = unfinished()
    if why is None:
        return None, None
    if not output.exists():
        return opts, None
    return dataclasses.replace(opts, overwrite=True), why


def reason_of(err: Exception) -> str:
    """One line for the batch report; errors that are not the input's fault are marked as internal."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (MedsrError, OSError)):
        return text
    return f"internal error {type(err).__name__}: {text} (please report it)"


def infer_options(
    *,
    method: str | None,
    model: Path | None,
    factor: float | None,
    spacing: float | None,
    axis: str | None,
    thickness: float | None,
    profile: str | None,
    budget: float | None,
    steps: int | None,
    device: str,
    seed: int,
    dtype: str,
    overwrite: bool,
    progress: bool,
    save_model: Path | None = None,
    series: str | None = None,
    volume_index: int | None = None,
    preview: Path | None = None,
) -> InferOptions:
    """The infer job's options from command-line values (``medsr infer``, ``medsr bids``, ``medsr dicom-node``).

    Checks what can be checked before any scan is read (the device, the profile for the method).
    """
    from medsr.inference.interpolate import canonical_method
    from medsr.inference.options import SelfSupOptions
    from medsr.inference.predict import refuse_profile
    from medsr.runtime.device import resolve_device

    resolve_device(device)  # every method (bspline too): before any scan is read, once for a batch
    if method is None:
        method = "model" if model is not None else DEFAULT_METHOD
    method = canonical_method(method)  # --method cubic is bspline, and recorded so
    if profile is not None:
        refuse_profile(method, profile)  # before any scan is read: a batch would fail every one
    selfsup = None
    if method == "selfsup" or model is not None:
        selfsup = SelfSupOptions(
            budget_s=budget,
            steps=steps,
            device=device,
            seed=seed,
            progress=progress,
            profile=profile,
            save_model=save_model,
        )
    return InferOptions(
        factor=factor,
        spacing=spacing,
        axis=axis,
        method=method,
        thickness=thickness,
        model=model,
        dtype=dtype,
        overwrite=overwrite,
        series=series,
        volume_index=volume_index,
        preview=preview,
        selfsup=selfsup,
    )
