"""PNG panels: axial, coronal and sagittal views of several volumes through one world point.

Each volume is shown on its own grid (a thick-slice input keeps its blocky look), reoriented to the
closest RAS axes and drawn with its physical extent in mm, all in one intensity window: a CT window in
Hounsfield units for CT (``CT_WINDOWS``), the 0.5-99.5 percentiles otherwise (MRI).
:func:`save_comparison` adds a row of absolute-error maps against the reference, in one error window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from medsr.errors import MedsrError
from medsr.io.atomic import atomic_output
from medsr.io.volume import affine_of
from medsr.runtime.normalise import robust_range

VIEWS = ("axial", "coronal", "sagittal")


def canonical(volume: MetaTensor) -> tuple[np.ndarray, np.ndarray]:
    """Array (X, Y, Z) and affine reoriented to the closest RAS axes (no resampling)."""
    import nibabel.orientations as nio

    data = volume.detach().cpu().as_subclass(torch.Tensor).numpy()[0]
    affine = affine_of(volume)
    ornt = nio.io_orientation(affine)
    data = nio.apply_orientation(data, ornt)
    affine = affine @ nio.inv_ornt_aff(ornt, volume.shape[1:])
    return data, affine


#: CT display windows (low, high) in HU: level -/+ width / 2.
CT_WINDOWS = {
    "soft": (-160.0, 240.0),  # W400 L40
    "brain": (0.0, 80.0),  # W80 L40
    "bone": (-450.0, 1050.0),  # W1500 L300
    "lung": (-1350.0, 150.0),  # W1500 L-600
}


def looks_like_ct(volume: MetaTensor) -> bool:
    """True for DICOM modality CT, or when at least 1 % of the voxels are below -500 (air in HU)."""
    modality = str(volume.meta.get("modality", "")).upper()
    if modality:
        return modality == "CT"
    data = volume.detach().cpu().as_subclass(torch.Tensor).numpy()
    return bool(np.mean(data < -500.0) >= 0.01)


def intensity_window(volume: MetaTensor, preset: str | None = None) -> tuple[float, float]:
    """Display window: a CT window in HU (``preset``, default ``soft``) for CT, 0.5-99.5 percentiles otherwise.

    ``preset``: a key of ``CT_WINDOWS`` (forces the CT window), ``percentile`` (forces percentiles) or None.
    """
    if preset is not None and preset not in (*CT_WINDOWS, "percentile"):
        raise MedsrError(f"window {preset!r} is not one of percentile, {', '.join(CT_WINDOWS)}")
    if preset in CT_WINDOWS:
        return CT_WINDOWS[preset]
    if preset is None and looks_like_ct(volume):
        return CT_WINDOWS["soft"]
    try:
        lo, hi = robust_range(volume.detach().as_subclass(torch.Tensor), max_voxels=2_000_000)
    except MedsrError:  # nothing finite to show: any window will do
        lo, hi = 0.0, 1.0
    return lo, hi if hi > lo else lo + 1.0


def _slice(data: np.ndarray, affine: np.ndarray, world: np.ndarray, view: str):
    """2-D image and its (left, right, bottom, top) extent in mm through ``world`` for one view."""
    index = np.linalg.solve(affine, np.append(world, 1.0))[:3]
    normal = {"axial": 2, "coronal": 1, "sagittal": 0}[view]
    k = int(np.clip(np.rint(index[normal]), 0, data.shape[normal] - 1))
    image = np.take(data, k, axis=normal)
    rows, cols = [a for a in range(3) if a != normal]
    lo = affine[:3, 3] + affine[:3, :3] @ np.full(3, -0.5)
    size = np.linalg.norm(affine[:3, :3], axis=0) * np.array(data.shape)
    extent = (lo[rows], lo[rows] + size[rows], lo[cols], lo[cols] + size[cols])
    return image.T, extent


def save_panel(
    path: Path,
    volumes: dict[str, MetaTensor],
    *,
    window: tuple[float, float] | None = None,
    centre_mm: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG grid: one row per view, one column per volume (same world point, same window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(name, *canonical(vol)) for name, vol in volumes.items()]
    ref = next(iter(volumes.values()))
    window = window or intensity_window(list(volumes.values())[-1])
    if centre_mm is None:
        data0, aff0 = items[0][1], items[0][2]
        centre_mm = aff0[:3, :3] @ ((np.array(data0.shape) - 1) / 2.0) + aff0[:3, 3]
    fig, axes = plt.subplots(3, len(items), figsize=(3.2 * len(items), 9.0), squeeze=False)
    for col, (name, data, affine) in enumerate(items):
        for row, view in enumerate(VIEWS):
            image, extent = _slice(data, affine, np.asarray(centre_mm, dtype=float), view)
            ax = axes[row][col]
            _show(ax, image, extent, "gray", window)
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(view)
    fig.suptitle(str(ref.meta.get("filename_or_obj", "")), fontsize=8)
    fig.tight_layout()
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def error_window(errors: list[np.ndarray], percentile: float = 99.5) -> float:
    """Upper end of a common absolute-error window: the ``percentile`` of all finite non-zero errors."""
    values = np.concatenate([e[np.isfinite(e) & (e > 0)].ravel() for e in errors]) if errors else np.array([])
    if values.size > 4_000_000:
        values = values[:: values.size // 4_000_000]
    return float(np.percentile(values, percentile)) if values.size else 1.0


def save_comparison(
    path: Path,
    columns: dict[str, MetaTensor],
    errors: dict[str, MetaTensor],
    *,
    view: str,
    window: tuple[float, float],
    error_max: float,
    centre_mm: np.ndarray | None = None,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """Write a 2-row PNG for one ``view``: the volumes (one window), then |error| maps (one error window).

    ``errors`` maps a column name to its absolute-error volume (on the reference grid, NaN where not
    covered); columns without one (input, reference) get an empty error cell.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if view not in VIEWS:
        raise MedsrError(f"view {view!r} is not one of {', '.join(VIEWS)}")
    items = [(name, *canonical(vol)) for name, vol in columns.items()]
    if centre_mm is None:
        data0, aff0 = items[-1][1], items[-1][2]
        centre_mm = aff0[:3, :3] @ ((np.array(data0.shape) - 1) / 2.0) + aff0[:3, 3]
    centre = np.asarray(centre_mm, dtype=float)
    fig, axes = plt.subplots(
        2, len(items), figsize=(2.9 * len(items), 6.4), squeeze=False, layout="constrained"
    )
    shown = None
    for col, (name, data, affine) in enumerate(items):
        image, extent = _slice(data, affine, centre, view)
        _show(axes[0][col], image, extent, "gray", window)
        axes[0][col].set_title(name, fontsize=9)
        if name in errors:
            err, err_affine = canonical(errors[name])
            image, extent = _slice(err, err_affine, centre, view)
            if shown is None:
                axes[1][col].set_ylabel(f"|error| [0, {error_max:.4g}]")
            shown = _show(axes[1][col], image, extent, "inferno", (0.0, error_max))
        else:
            axes[1][col].axis("off")
    axes[0][0].set_ylabel(f"{view} [{window[0]:.4g}, {window[1]:.4g}]")
    if shown is not None:
        fig.colorbar(shown, ax=list(axes[1]), shrink=0.8, label="|SR - HR|")
    fig.suptitle(title, fontsize=9)
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def _show(ax, image: np.ndarray, extent, cmap: str, window: tuple[float, float]):
    ax.set_facecolor("black")
    shown = ax.imshow(
        image,
        cmap=cmap,
        vmin=window[0],
        vmax=window[1],
        origin="lower",
        extent=extent,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return shown
