"""Peak memory of ``medsr infer`` (self-supervised) on large volumes: the issue's memory targets.

For each size, writes a thick-slice head-CT-like volume (int16 HU, the synthetic CT of
selfsup_cases.py with a 512 x 512 matrix at 0.5 mm in-plane by default, 2 mm slices), then runs the
real command ``medsr infer LR -o OUT --thickness ... --budget ...`` in a fresh process (file read,
training, tiled inference, NIfTI write) and reads that process's peak resident memory (VmHWM) as it
exits. The default factor upscales to the in-plane spacing: 75 slices of 2 mm become 300 of 0.5 mm.

Printed per run: shapes, wall time, training steps, peak RSS, the memory of a process that only
imports medsr's command line (Python, torch, MONAI), the input and output arrays in float32, and
what remains: peak - imports - arrays, the memory the method itself needs. Targets (the issue):
that remainder under about 1.5 GB whatever the volume size, and a 512 x 512 x 300 output within 6 GB.
Training memory does not depend on the number of steps, so a short budget is enough (default 20 s).

    python benchmarks/selfsup_memory.py                                  # 256^2 x 40 and 512^2 x 75 slices
    python benchmarks/selfsup_memory.py --sizes 512x512x75 --profile mixed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medsr.io.naming import sidecar_path

sys.path.insert(0, str(Path(__file__).resolve().parent))

_CHILD = """
import atexit, json, sys
from pathlib import Path

from medsr.jobs.benchmark import max_rss_mb  # VmHWM, as medsr benchmark measures its methods

RESULT = Path(sys.argv[1])
atexit.register(lambda: RESULT.write_text(json.dumps({"peak_rss_mb": max_rss_mb()})))
if len(sys.argv) > 2:
    import medsr.cli.main
    sys.argv = ["medsr", *sys.argv[2:]]
    medsr.cli.main.main()
else:  # what the command imports before it reads a scan
    import monai, nibabel, torch
    import medsr.cli.main, medsr.inference.selfsup.pipeline, medsr.io.readers, medsr.io.writers
"""


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 8:
        raise argparse.ArgumentTypeError(f"size {text!r} is not X x Y x slices, e.g. 512x512x75")
    return shape  # type: ignore[return-value]


def write_lr(path: Path, shape: tuple[int, int, int], in_plane: float, spacing: float) -> None:
    """A thick-slice head-CT-like int16 volume (HU) with ``in_plane`` x ``in_plane`` x ``spacing`` mm voxels."""
    import nibabel as nib
    from selfsup_cases import synthetic_ct

    vol = synthetic_ct(shape).as_tensor().numpy()[0]
    affine = np.diag([in_plane, in_plane, spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array([in_plane, in_plane, spacing])
    nib.save(nib.Nifti1Image(np.round(vol).astype(np.int16), affine), str(path))


def run_child(args: list[str], workdir: Path) -> tuple[dict, float]:
    """Run the medsr CLI (or only its imports, with no ``args``) in a fresh process; (peak, wall s)."""
    result = workdir / "rss.json"
    result.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(result), *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"medsr {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(result.read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256x256x40,512x512x75", help="comma list of X x Y x slices")
    parser.add_argument("--in-plane", type=float, default=0.5, help="in-plane voxel size, mm")
    parser.add_argument("--spacing", type=float, default=2.0, help="slice spacing (and thickness), mm")
    parser.add_argument("--budget", type=float, default=20.0, help="training budget, s")
    parser.add_argument("--profile", default="gaussian", help="gaussian, boxcar or mixed")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    args = parser.parse_args()
    import nibabel as nib

    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    mb = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        imports, _ = run_child([], work)
        print(f"imports only (Python, torch, MONAI, medsr): {imports['peak_rss_mb']:.0f} MB", flush=True)
        print(
            "| input | output | profile | wall s | steps | peak RSS MB | arrays MB | beyond imports and arrays MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for shape in sizes:
            lr, out = work / "lr.nii.gz", work / "sr.nii.gz"
            write_lr(lr, shape, args.in_plane, args.spacing)
            peak, wall = run_child(
                [
                    "infer",
                    str(lr),
                    "-o",
                    str(out),
                    "--thickness",
                    str(args.spacing),
                    "--budget",
                    str(args.budget),
                    "--profile",
                    args.profile,
                    "--device",
                    args.device,
                    "--no-progress",
                    "--overwrite",
                ],
                work,
            )
            facts = json.loads(sidecar_path(out).read_text())
            shape_out = nib.load(str(out)).shape
            arrays = (np.prod(shape) + np.prod(shape_out)) * 4 / mb
            beyond = peak["peak_rss_mb"] - imports["peak_rss_mb"] - arrays
            print(
                f"| {'x'.join(map(str, shape))} | {'x'.join(map(str, shape_out))} | {args.profile} | {wall:.0f} "
                f"| {facts.get('steps')} | {peak['peak_rss_mb']:.0f} | {arrays:.0f} | {beyond:.0f} |",
                flush=True,
            )
            lr.unlink()
            out.unlink()


if __name__ == "__main__":
    main()
