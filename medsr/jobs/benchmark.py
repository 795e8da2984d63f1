"""``medsr benchmark``: simulate thick slices from an HR scan, upscale with each method, score and draw.

Each method runs in a fresh Python process (``python -m medsr.jobs.benchmark SPEC.json``) that
loads the LR volume, calls :func:`medsr.inference.predict.upscale` and writes the SR volume. Its peak
memory is the kernel's high-water mark of the process's resident memory (``VmHWM`` in /proc/self/status;
``ru_maxrss`` where there is no /proc). It counts torch's C++/OpenMP/MKL allocations that ``tracemalloc``
cannot see and catches peaks that sampling (psutil) can miss; a fresh process per method keeps one
method's peak from hiding another's. (On Linux ``ru_maxrss`` of a child started by fork/vfork + exec
starts at the parent's peak, which is why VmHWM is read instead.) ``peak_rss_mb`` is the whole process
(Python, torch and the LR volume included); ``method_rss_mb`` is the rise during the upscale call. On
CUDA, ``peak_gpu_mb`` is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medsr.errors import MedsrError
from medsr.inference.interpolate import INTERPOLATORS, canonical_method
from medsr.inference.options import SelfSupOptions
from medsr.transforms.functional import DEFAULT_PROFILE, PROFILES

MEMORY_MEASURE = (
    "peak resident memory (VmHWM) of a fresh process per method, Python and torch included; "
    "method_rss_mb in report.json is the rise during the upscale call"
)
VIEWS = ("axial", "coronal", "sagittal")


@dataclass(frozen=True)
class MethodSpec:
    """One benchmark column: a display ``name``, the ``upscale`` method and an optional checkpoint."""

    name: str
    method: str
    model: Path | None = None


def parse_methods(text: str) -> list[MethodSpec]:
    """``"nearest,linear,bspline,selfsup,model:CKPT"`` -> specs (checkpoints must exist)."""
    specs: list[MethodSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.startswith("model:"):
            ckpt = Path(part[len("model:") :])
            if not ckpt.is_file():
                raise MedsrError(f"--methods {part}: checkpoint {ckpt} not found; give model:PATH to a file")
            specs.append(MethodSpec(f"model:{ckpt.name}", "model", ckpt))
        elif canonical_method(part) in (*INTERPOLATORS, "selfsup"):
            specs.append(MethodSpec(canonical_method(part), canonical_method(part)))
        else:
            raise MedsrError(
                f"--methods: {part!r} is not one of nearest, linear, bspline (or cubic), selfsup or model:CKPT"
            )
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names):
        raise MedsrError(f"--methods {text!r} must list at least one method, each once")
    return specs


@dataclass(frozen=True)
class BenchmarkOptions:
    """Settings of a benchmark run (see ``medsr benchmark --help``)."""

    factor: float = 4.0
    thickness: float | None = None
    profile: str = DEFAULT_PROFILE  # simulated slice profile; selfsup is told the same
    axis: str | None = None
    methods: tuple[MethodSpec, ...] = tuple(MethodSpec(m, m) for m in INTERPOLATORS)
    mask: str = "auto"
    noise: str | None = None
    window: str | None = None
    selfsup: SelfSupOptions = SelfSupOptions()  # budget_s, steps, device, seed of the learned methods
    isolate: bool = True
    overwrite: bool = False
    progress: bool = False  # a line per method on stderr, and the learned methods' own progress bars


def run_method(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the LR file, upscale it with one method, write the SR file; returns time and memory facts."""
    import torch

    from medsr.inference.predict import upscale
    from medsr.io.readers import load_volume
    from medsr.io.writers import save_volume

    lr = load_volume(spec["lr"])
    base = max_rss_mb()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    sr = upscale(
        lr,
        factor=spec["factor"],
        axis=spec["axis"],
        method=spec["method"],
        thickness=spec["thickness"],
        model=spec.get("model"),
        **spec.get("learner", {}),
    )
    seconds = time.perf_counter() - start
    peak = max_rss_mb()
    save_volume(sr, spec["output"], overwrite=True)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda and torch.cuda.is_initialized() else None
    return {
        "seconds": seconds,
        "peak_rss_mb": peak,
        "method_rss_mb": None if peak is None or base is None else peak - base,
        "peak_gpu_mb": gpu or None,
        "facts": sr.meta.get("medsr", {}),
    }


def run_isolated(spec: dict[str, Any], show_output: bool = False) -> dict[str, Any]:
    """:func:`run_method` in a fresh Python process; a failure comes back as ``{"error": ...}``.

    With ``show_output`` the worker's stderr (its progress bars) goes to this process's stderr.
    """
    with tempfile.TemporaryDirectory(prefix="medsr-bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({**spec, "result": str(result_path)}, default=str))
        proc = subprocess.run(
            [sys.executable, "-m", "medsr.jobs.benchmark", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=None if show_output else subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0 or not result_path.exists():
            lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            return {"error": lines[-1] if lines else f"worker exited with code {proc.returncode}"}
        return json.loads(result_path.read_text())


def machine_info() -> dict[str, Any]:
    """CPU model (/proc/cpuinfo), usable cores (as ``nproc``), GPU name, Python and torch versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "nproc": nproc,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def run_benchmark(
    hr_path: Path, outdir: Path, opts: BenchmarkOptions, *, command: str = ""
) -> dict[str, Any]:
    """Simulate, upscale with every method, evaluate, draw panels; write report.json and report.md in ``outdir``.

    Returns the report (the content of report.json before the strings for inf/nan).
    """
    from medsr import __version__, geometry
    from medsr.evaluation.compare import evaluate_volumes
    from medsr.evaluation.report import benchmark_markdown, save_json
    from medsr.io.atomic import atomic_output
    from medsr.io.naming import safe_name, sha256_of
    from medsr.io.readers import load_volume
    from medsr.io.volume import affine_of
    from medsr.io.writers import save_volume
    from medsr.runtime.device import resolve_device
    from medsr.transforms.array import default_axis, simulate_thick_slices

    resolve_device(opts.selfsup.device)  # before anything is written or read
    _prepare_outdir(outdir, opts.overwrite)
    hr = load_volume(hr_path)
    hr_affine = affine_of(hr)
    axis = default_axis(hr_affine) if opts.axis is None else geometry.resolve_axis(hr_affine, opts.axis)
    if not (np.isfinite(opts.factor) and opts.factor > 1.0):
        raise MedsrError(f"--factor {opts.factor} must be above 1 (the LR slice spacing in HR voxels)")
    spacing = float(opts.factor * geometry.voxel_sizes(hr_affine)[axis])
    thickness = spacing if opts.thickness is None else float(opts.thickness)
    if opts.profile not in PROFILES:
        raise MedsrError(f"--profile {opts.profile!r} is not one of {', '.join(PROFILES)}")
    lr = simulate_thick_slices(
        hr, thickness, spacing, axis=axis, profile=opts.profile, noise=opts.noise, rng=0
    )
    lr_path = outdir / "lr.nii.gz"
    save_volume(lr, lr_path, overwrite=True)
    rows: list[dict[str, Any]] = []
    srs: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for k, m in enumerate(opts.methods, 1):
        output = outdir / f"sr_{safe_name(m.name.replace(':', '_'))}.nii.gz"
        spec = {
            "lr": str(lr_path),
            "output": str(output),
            "method": m.method,
            "model": str(m.model) if m.model else None,
            "factor": float(opts.factor),
            "axis": axis,
            "thickness": thickness,
            "learner": _learner(m, opts),
        }
        row: dict[str, Any] = {"name": m.name, "method": m.method, "output": output.name}
        _say(opts, f"benchmark [{k}/{len(opts.methods)}] {m.name} ...")
        try:
            facts = run_isolated(spec, opts.progress) if opts.isolate else run_method(spec)
        except Exception as err:  # in-process run: report it in the row like the worker does
            facts = {"error": _one_line(err)}
        _say(opts, f"benchmark [{k}/{len(opts.methods)}] {m.name}: " + _outcome(facts))
        if "error" in facts:
            rows.append({**row, "error": facts["error"]})
            continue
        if not opts.isolate:
            facts.update(peak_rss_mb=None, method_rss_mb=None)
        sr = load_volume(output)
        ev = evaluate_volumes(sr, hr, mask=opts.mask, axis=axis, factor=opts.factor)
        srs[m.name] = sr
        summary = summary or {k: ev[k] for k in ("mask", "data_range", "axis")}
        rows.append({**row, **ev["metrics"], **{k: facts.get(k) for k in _FACT_KEYS}, "grid": ev["grid"]})
        rows[-1]["details"] = facts.get("facts", {})
    if not srs:
        raise MedsrError(f"every method failed: {'; '.join(r['name'] + ': ' + r['error'] for r in rows)}")
    panels = _panels(
        outdir, lr, srs, hr, opts, title=f"{Path(hr_path).name}: x{opts.factor:g} along axis {axis}"
    )
    result = {
        "schema": "medsr.benchmark/1",
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "medsr_version": __version__,
        "hr": str(hr_path),
        "hr_sha256": sha256_of(Path(hr_path)),
        "factor": float(opts.factor),
        "machine": machine_info(),
        "simulation": {**lr.meta["simulation"], "lr_shape": list(lr.shape[1:]), "lr": lr_path.name},
        "evaluation": summary,
        "memory_measure": MEMORY_MEASURE if opts.isolate else "not measured (--in-process)",
        "methods": rows,
        "panels": [p.name for p in panels],
    }
    save_json(outdir / "report.json", result)
    with atomic_output(outdir / "report.md", overwrite=True) as tmp:
        tmp.write_text(benchmark_markdown(result))
    return result


_FACT_KEYS = ("seconds", "peak_rss_mb", "method_rss_mb", "peak_gpu_mb")


def _learner(spec: MethodSpec, opts: BenchmarkOptions) -> dict[str, Any]:
    """upscale's keyword options for a learned method (JSON for the worker process): the run's training
    options, progress, and for selfsup the simulated profile."""
    if spec.method not in ("selfsup", "model"):
        return {}
    s = opts.selfsup
    extra = {"profile": opts.profile} if spec.method == "selfsup" else {}
    return {
        "budget_s": s.budget_s,
        "steps": s.steps,
        "device": s.device,
        "seed": s.seed,
        "progress": opts.progress,
        **extra,
    }


def _say(opts: BenchmarkOptions, line: str) -> None:
    if opts.progress:
        print(line, file=sys.stderr, flush=True)


def _outcome(facts: dict[str, Any]) -> str:
    if "error" in facts:
        return f"failed: {facts['error']}"
    return f"done in {facts['seconds']:.1f} s"


def _panels(outdir: Path, lr, srs: dict, hr, opts: BenchmarkOptions, title: str) -> list[Path]:
    """panel_<view>.png: LR, each method and HR in one window, |SR - HR| maps in one error window."""
    import torch

    from medsr.evaluation.compare import on_reference_grid, spatial_array
    from medsr.evaluation.figures import error_window, intensity_window, save_comparison
    from medsr.io.volume import affine_of, make_volume

    hr_data = spatial_array(hr)
    errors = {}
    for name, sr in srs.items():
        on_hr, valid, _ = on_reference_grid(sr, hr)
        errors[name] = np.where(valid, np.abs(on_hr - hr_data), np.nan).astype(np.float32)
    emax = error_window(list(errors.values()))
    window = intensity_window(hr, opts.window)
    lr_name = f"LR {lr.meta['simulation']['slice_spacing_mm']:g} mm"
    columns = {lr_name: lr, **srs, "HR (truth)": hr}
    maps = {k: make_volume(torch.from_numpy(v), affine_of(hr)) for k, v in errors.items()}
    return [
        save_comparison(
            outdir / f"panel_{view}.png",
            columns,
            maps,
            view=view,
            window=window,
            error_max=emax,
            title=title,
            overwrite=True,
        )
        for view in VIEWS
    ]


def _prepare_outdir(outdir: Path, overwrite: bool) -> None:
    if (outdir / "report.json").exists() and not overwrite:
        raise MedsrError(
            f"{outdir} already holds a benchmark (report.json); pass --overwrite or choose another -o"
        )
    if outdir.exists() and not outdir.is_dir():
        raise MedsrError(f"{outdir} is a file; -o names the output folder")
    outdir.mkdir(parents=True, exist_ok=True)


def max_rss_mb() -> float | None:
    """This process's peak resident memory in MiB: VmHWM from /proc, else ru_maxrss, else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _worker_main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = run_method(spec)
    except Exception as err:  # reported in the method's row; the benchmark goes on with the others
        result = {"error": _one_line(err)}
    Path(spec["result"]).write_text(json.dumps(result, default=str))
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if isinstance(err, MedsrError) else f"{type(err).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
