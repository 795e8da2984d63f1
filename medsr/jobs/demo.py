"""``medsr demo``: the main job end to end on the MNI152 scan that ships inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from medsr.errors import MedsrError
from medsr.inference.options import SelfSupOptions

DEMO_SCAN = "mni152_2009a_t1_1mm_crop.nii.gz"
#: The demo acquisition: 4 mm thick axial slices every 4 mm (Gaussian profile), upscaled x4 along S-I.
DEMO_THICKNESS_MM = 4.0
DEMO_FACTOR = 4


def demo_scan_path() -> Path:
    """Path of the packaged 1 mm MNI152 T1 crop (licence: medsr/data/LICENSE_MNI152.txt)."""
    return Path(str(resources.files("medsr") / "data" / DEMO_SCAN))


def run_demo(
    outdir: Path, *, method: str, overwrite: bool = False, learner: SelfSupOptions | None = None
) -> dict[str, Path]:
    """Simulate a 4 mm axial scan from the 1 mm template, upscale it x4, write volumes and a PNG panel.

    Returns the paths written: ``hr``, ``lr``, ``sr`` (NIfTI) and ``panel`` (PNG) in ``outdir``.
    """
    from medsr.evaluation.figures import save_panel
    from medsr.inference.interpolate import canonical_method
    from medsr.inference.predict import upscale
    from medsr.io.readers import load_volume
    from medsr.io.writers import save_volume
    from medsr.transforms.array import simulate_thick_slices

    method = canonical_method(method)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "lr": outdir / "demo_lr_4mm.nii.gz",
        "sr": outdir / f"demo_{method}_1mm.nii.gz",
        "panel": outdir / "demo_panel.png",
    }
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise MedsrError(f"{outdir} already holds demo outputs ({', '.join(existing)}); pass --overwrite")
    hr = load_volume(demo_scan_path())
    lr = simulate_thick_slices(
        hr, slice_thickness=DEMO_THICKNESS_MM, slice_spacing=DEMO_THICKNESS_MM, axis="S"
    )
    save_volume(lr, paths["lr"], overwrite=overwrite)
    sr = upscale(lr, factor=DEMO_FACTOR, method=method, thickness=DEMO_THICKNESS_MM, learner=learner)
    save_volume(sr, paths["sr"], overwrite=overwrite)
    panels = {"thick 4 mm": lr}
    if method != "bspline":
        panels["cubic B-spline"] = upscale(lr, factor=DEMO_FACTOR, method="bspline")
    panels[f"medsr {method}"] = sr
    panels["truth 1 mm"] = hr
    save_panel(paths["panel"], panels, overwrite=overwrite)
    return {"hr": demo_scan_path(), **paths}
