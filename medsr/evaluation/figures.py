"""PNG panels: axial, coronal and sagittal views of several volumes through one world point.

Each volume is shown on its own grid (a thick-slice input keeps its blocky look), reoriented to the
closest RAS axes and drawn with its physical extent in mm, all in one intensity window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from medsr.io.atomic import atomic_output
from medsr.io.volume import affine_of

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


def intensity_window(volume: MetaTensor) -> tuple[float, float]:
    """Display window: a soft-tissue/bone HU window for CT, 0.5-99.5 percentiles otherwise."""
    data = volume.detach().cpu().as_subclass(torch.Tensor).numpy()
    if str(volume.meta.get("modality", "")).upper() == "CT":
        return -160.0, 240.0
    finite = data[np.isfinite(data)]
    if finite.size > 2_000_000:
        finite = finite[:: finite.size // 2_000_000]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1.0)


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
            ax.imshow(
                image,
                cmap="gray",
                vmin=window[0],
                vmax=window[1],
                origin="lower",
                extent=extent,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
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
