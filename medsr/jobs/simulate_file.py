"""File-to-file thick-slice simulation (what ``medsr simulate`` runs): LR volume plus a JSON sidecar.

Default output: ``<stem>_lr.nii.gz`` beside the input, ``<folder>_lr/`` (a DICOM series) beside a DICOM
series folder; the sidecar is the output path with its suffix replaced by ``.json`` (medsr.io.naming).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsr import __version__, geometry
from medsr.io.atomic import check_output, write_json
from medsr.io.naming import check_sidecar, default_output, sidecar_path
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of, spatial_shape
from medsr.io.writers import output_format, save_volume
from medsr.transforms.array import AxisSpec, simulate_thick_slices
from medsr.transforms.noise import parse_noise


def simulate_file(
    input_path: str | Path,
    output: str | Path | None = None,
    *,
    thickness: float,
    spacing: float | None = None,
    axis: AxisSpec = None,
    profile: str = "gaussian",
    noise: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    series: str | None = None,
    volume_index: int | None = None,
) -> tuple[Path, Path]:
    """Read ``input_path``, simulate thick slices, write the LR volume and its sidecar; return both paths.

    Every check on the arguments and outputs happens before anything is written.
    """
    src = Path(input_path)
    out = Path(output) if output is not None else default_output(src, tag="lr")
    sidecar = sidecar_path(out)
    output_format(out)
    for path in (out, sidecar):
        check_output(path, overwrite=overwrite, inputs=(src,))
    check_sidecar(out, overwrite=overwrite)  # never another output's sidecar, even with --overwrite
    noise_model = parse_noise(noise)
    hr = load_volume(src, series=series, volume_index=volume_index)
    lr = simulate_thick_slices(hr, thickness, spacing, axis, profile, noise_model, rng=seed)
    record = simulation_record(hr, lr, src, out, seed)
    save_volume(lr, out, overwrite=overwrite, description_suffix=f" medsr simulated {thickness:g} mm")
    write_json(sidecar, record, overwrite=overwrite)
    return out, sidecar


def simulation_record(hr: Any, lr: Any, src: Path, out: Path, seed: int) -> dict[str, Any]:
    """The sidecar content: the simulation parameters, the seed, both grids, paths and the medsr version."""
    return {
        "medsr_version": __version__,
        "input": str(src.resolve()),
        "output": str(out.resolve()),
        "seed": seed,
        **lr.meta["simulation"],
        "hr_shape": list(spatial_shape(hr)),
        "hr_spacing": [float(v) for v in geometry.voxel_sizes(affine_of(hr))],
        "lr_shape": list(spatial_shape(lr)),
        "lr_spacing": [float(v) for v in geometry.voxel_sizes(affine_of(lr))],
        "lr_affine": affine_of(lr).tolist(),
    }
