"""How well medsr's slice-thickness check (medsr/inference/selfsup/thickness.py) reads the slices of a scan.

For thick-slice volumes simulated from nilearn's MNI152 T1/GM and the synthetic head CT (the cases of
selfsup_quality.py), prints the true slice thickness, the estimate, both as fractions of the spacing,
and whether the check calls the slices thin (gaps: medsr then trains for the estimate). No training;
a few seconds in all.

    python benchmarks/thickness_check.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from selfsup_cases import load_case  # noqa: E402

#: (label, load_case arguments); thickness defaults to the spacing (4 mm).
CASES = [
    ("t1 S-I 4/4 mm", {}),
    ("t1 R-L 4/4 mm", {"axis": 0}),
    ("t1 A-P 4/4 mm", {"axis": 1}),
    ("t1 S-I 2/2 mm", {"spacing": 2.0}),
    ("t1 S-I 5/5 mm", {"spacing": 5.0}),
    ("t1 S-I 5/4 mm (overlap)", {"thickness": 5.0}),
    ("t1 S-I 4/4 mm boxcar", {"profile": "boxcar"}),
    ("t1 S-I 4/4 mm rician SNR 30", {"noise": "rician:30"}),
    ("t1 S-I 4/4 mm from a noisy 1 mm scan", {"hr_noise": "rician:20"}),
    ("gm S-I 4/4 mm", {"name": "gm"}),
    ("ct S-I 4/4 mm", {"name": "ct"}),
    ("ct S-I 4/4 mm, 1.4 mm PSF", {"name": "ct", "psf": 1.4}),
    ("ct S-I 4/4 mm, 20 HU noise", {"name": "ct", "noise": "gaussian:20"}),
    ("t1 S-I 2.5/4 mm (gaps)", {"thickness": 2.5}),
    ("t1 A-P 2/4 mm (gaps)", {"axis": 1, "thickness": 2.0}),
    ("t1 S-I 1/4 mm (gaps)", {"thickness": 1.0}),
    ("t1 R-L 1/4 mm (gaps)", {"axis": 0, "thickness": 1.0}),
    ("ct S-I 1/4 mm (gaps)", {"name": "ct", "thickness": 1.0}),
]


def main() -> None:
    from medsr import geometry
    from medsr.inference.selfsup.noise import estimate_noise
    from medsr.inference.selfsup.pipeline import intensity_range
    from medsr.inference.selfsup.thickness import THIN_FRACTION, estimate_thickness, looks_thin
    from medsr.io.volume import affine_of

    print(f"slices count as thin (gaps) below {THIN_FRACTION:g} x spacing\n")
    print(
        "| case | thickness mm | estimate mm | thickness / spacing | estimate / spacing | called thin | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, kwargs in CASES:
        case = load_case(**kwargs)
        lr, axis = case["lr"], case["axis"]
        sizes = geometry.voxel_sizes(affine_of(lr))
        spacing = float(sizes[axis])
        data = lr.as_tensor()[0].float()
        lo, hi = intensity_range(data, (0.5, 99.5))
        norm = (data - lo) / (hi - lo)
        t0 = time.perf_counter()
        noise = estimate_noise(torch.movedim(norm, axis, 0))
        found = estimate_thickness(norm, axis, sizes, case["profile"], noise=noise)
        wall = time.perf_counter() - t0
        true = case["thickness"]
        print(
            f"| {label} | {true:g} | {found:.2f} | {true / spacing:.2f} | {found / spacing:.2f} | "
            f"{'yes' if looks_thin(found, spacing) else 'no'} | {wall:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
