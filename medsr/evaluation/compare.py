"""Compare an SR volume with its HR reference in world coordinates.

``index_map = inv(A_hr) @ A_sr`` takes SR voxel indices to HR voxel indices. When it is the identity
the grids are the same; otherwise SR is resampled at the HR voxel centres (trilinear; a map that is an
integer shift or axis permutation within 1e-4 voxels copies the values exactly). HR voxels whose centre
falls outside the SR's physical extent are left out of every metric. ``grid_offset_vox`` is the sub-voxel
offset of the SR voxel centres from the HR voxel centres (HR voxels, in (-0.5, 0.5]): a grid written with
a half-voxel error in its affine shows up as 0.5 along that axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of, spatial_shape
from medsr.runtime import metrics
from medsr.runtime.normalise import robust_range

#: Index maps within this many voxels of an integer are snapped (the copy is then exact).
INDEX_ATOL = 1e-4
DATA_RANGE_CONVENTION = "P99.5 - P0.5 of HR over the voxels SR covers; PSNR = 10 log10(range^2 / MSE)"


@dataclass(frozen=True)
class GridAlignment:
    """How the SR grid sits on the HR grid (all index quantities in HR voxels)."""

    index_map: np.ndarray  # 4x4: SR voxel index -> HR voxel index
    offset_vox: np.ndarray  # (3,) sub-voxel offset of SR voxel 0 from the nearest HR voxel centre
    same_grid: bool  # same shape and index_map == identity
    same_lattice: bool  # SR voxel centres are HR voxel centres (integer shift / permutation / flip)

    def as_dict(self) -> dict[str, Any]:
        offset = [round(float(v), 6) for v in self.offset_vox]
        return {
            "same_grid": self.same_grid,
            "resampled": not self.same_grid,
            "interpolation": "none" if self.same_lattice else "linear",
            "grid_offset_vox": offset,
            "grid_offset_max_vox": max(abs(v) for v in offset),
            "sr_to_hr_index": np.round(self.index_map, 6).tolist(),
        }


def grid_alignment(
    sr_shape: tuple[int, ...], sr_affine: np.ndarray, hr_shape: tuple[int, ...], hr_affine: np.ndarray
) -> GridAlignment:
    """Alignment of an SR grid (shape, affine) with an HR grid; see the module docstring."""
    index_map = _snap(np.linalg.solve(geometry.as_affine(hr_affine), geometry.as_affine(sr_affine)))
    origin = index_map[:3, 3]
    offset = origin - np.ceil(origin - 0.5 - INDEX_ATOL)  # in (-0.5, 0.5], +0.5 kept within tolerance
    offset[np.abs(offset) < INDEX_ATOL] = 0.0
    linear = index_map[:3, :3]
    is_permutation = bool(np.all(np.isin(linear, (-1.0, 0.0, 1.0))) and np.all(np.abs(linear).sum(0) == 1))
    same_lattice = is_permutation and bool(np.all(offset == 0.0))
    same_grid = tuple(sr_shape[-3:]) == tuple(hr_shape[-3:]) and bool(np.array_equal(index_map, np.eye(4)))
    return GridAlignment(index_map, offset, same_grid, same_lattice)


def covered_voxels(hr_shape: tuple[int, ...], index_map: np.ndarray, sr_shape: tuple[int, ...]) -> np.ndarray:
    """Boolean (X, Y, Z) on the HR grid: voxel centres inside the SR's physical extent."""
    to_sr = np.linalg.inv(index_map)
    ranges = [np.arange(n, dtype=np.float64) for n in hr_shape[-3:]]
    valid = np.ones(tuple(hr_shape[-3:]), dtype=bool)
    for k, n in enumerate(sr_shape[-3:]):
        coord = (
            sum(to_sr[k, j] * ranges[j].reshape([-1 if d == j else 1 for d in range(3)]) for j in range(3))
            + to_sr[k, 3]
        )
        valid &= (coord >= -0.5 - INDEX_ATOL) & (coord <= n - 0.5 + INDEX_ATOL)
    return valid


def resample_array(
    data: np.ndarray, index_map: np.ndarray, hr_shape: tuple[int, ...], order: int = 1
) -> np.ndarray:
    """Values of ``data`` (SR grid, X, Y, Z) at the HR voxel centres; edge values extend outwards."""
    from scipy import ndimage

    to_sr = _snap(np.linalg.inv(index_map))
    return ndimage.affine_transform(
        np.asarray(data, dtype=np.float32),
        to_sr[:3, :3],
        offset=to_sr[:3, 3],
        output_shape=tuple(int(n) for n in hr_shape[-3:]),
        order=order,
        mode="nearest",
        prefilter=False,
    )


def on_reference_grid(
    sr: MetaTensor, hr: MetaTensor, order: int = 1
) -> tuple[np.ndarray, np.ndarray, GridAlignment]:
    """SR values on the HR grid (X, Y, Z) float32, the voxels SR covers, and the alignment.

    ``order``: 1 (linear) for images, 0 (nearest) for masks. Raises MedsrError when the two volumes do
    not overlap in world space.
    """
    align = grid_alignment(spatial_shape(sr), affine_of(sr), spatial_shape(hr), affine_of(hr))
    data = spatial_array(sr)
    if align.same_grid:
        return data, np.ones(data.shape, dtype=bool), align
    valid = covered_voxels(spatial_shape(hr), align.index_map, spatial_shape(sr))
    if not valid.any():
        raise MedsrError(
            f"{volume_name(sr)} and {volume_name(hr)} do not overlap in world space (SR voxel 0 lands on HR index "
            f"{np.round(align.index_map[:3, 3], 2).tolist()}); compare volumes of the same scan and space"
        )
    out = resample_array(data, align.index_map, spatial_shape(hr), order=0 if align.same_lattice else order)
    return out, valid, align


def matched_axis(src_affine: np.ndarray, axis: int, dst_affine: np.ndarray) -> int:
    """The array axis of ``dst_affine`` whose world direction is closest to ``axis`` of ``src_affine``."""
    direction = np.asarray(src_affine, dtype=np.float64)[:3, axis]
    cols = np.asarray(dst_affine, dtype=np.float64)[:3, :3]
    cosines = np.abs(direction @ cols) / (np.linalg.norm(direction) * np.linalg.norm(cols, axis=0))
    return int(np.argmax(cosines))


def upscaled_axis(volume: MetaTensor, axis: int | str | None, facts: dict[str, Any]) -> tuple[int, str]:
    """The array axis of ``volume`` that was upscaled, and where that answer came from.

    Order: ``axis`` (the --axis option), the sidecar's ``axis``, the thickest axis, the axis closest to S.
    """
    affine = affine_of(volume)
    if axis is not None:
        return geometry.resolve_axis(affine, axis), "--axis"
    if facts.get("axis") is not None:
        return int(facts["axis"]), "sidecar"
    try:
        return geometry.through_plane_axis(affine), "thickest axis"
    except MedsrError:
        return geometry.axis_from_direction(affine, "S"), "closest to S (no sidecar, isotropic voxels)"


def evaluate_volumes(
    sr: MetaTensor,
    hr: MetaTensor,
    *,
    mask: str | MetaTensor = "auto",
    axis: int | str | None = None,
    factor: float | None = None,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Full-reference evaluation of ``sr`` against ``hr`` (both (1, X, Y, Z)), as a JSON-ready dict.

    Args:
        mask: ``auto`` (Otsu foreground of HR), ``none`` (every covered voxel), or a mask volume (> 0.5
            inside, resampled nearest onto the HR grid). ``auto``/``none`` also drop the first and last
            slab (``factor`` upscaled voxels, in mm) of the covered region along the upscaled axis.
        axis / factor: upscaled SR axis and factor; default from ``facts`` (the SR's sidecar).
    """
    facts = facts or {}
    sr_data, valid, align = on_reference_grid(sr, hr)
    hr_data = spatial_array(hr)
    sr_data = np.where(valid, sr_data, hr_data)  # uncovered voxels never enter a metric
    sr_axis, axis_source = upscaled_axis(sr, axis, facts)
    hr_axis = matched_axis(affine_of(sr), sr_axis, affine_of(hr))
    width = 0
    if isinstance(mask, str):  # auto/none: drop one LR slice's worth of voxels at each end
        factor_source = "--factor"
        if factor is None:
            factor = facts.get("effective_factor") or facts.get("factor")
            factor_source = "sidecar" if factor is not None else "unknown (slab = one SR voxel)"
        slab_mm = float(factor or 1.0) * float(geometry.voxel_sizes(affine_of(sr))[sr_axis])
        width = max(1, int(np.ceil(slab_mm / geometry.voxel_sizes(affine_of(hr))[hr_axis] - 1e-6)))
    region, mask_info = evaluation_mask(mask, hr, valid, edge_axis=hr_axis, edge_width=width)
    if width:
        mask_info.update(
            edge_slab_mm=slab_mm, edge_slab_hr_voxels=width, factor=factor, factor_source=factor_source
        )
    lo, hi = robust_range(hr_data, metrics.PERCENTILES, where=valid, max_voxels=None)
    result = {
        "schema": "medsr.evaluate/1",
        "sr": volume_name(sr),
        "hr": volume_name(hr),
        "grid": {**align.as_dict(), "hr_voxels_covered_fraction": round(float(valid.mean()), 6)},
        "axis": {
            "sr": sr_axis,
            "hr": hr_axis,
            "direction": geometry.orientation_codes(affine_of(hr))[hr_axis],
            "source": axis_source,
        },
        "mask": mask_info,
        "data_range": {"value": hi - lo, "low": lo, "high": hi, "convention": DATA_RANGE_CONVENTION},
        "metrics": metrics.full_reference(sr_data, hr_data, region, hi - lo, hr_axis),
        "warnings": _warnings(align),
    }
    return result


def evaluation_mask(
    mask: str | MetaTensor,
    reference: MetaTensor,
    valid: np.ndarray,
    *,
    edge_axis: int = 0,
    edge_width: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean (X, Y, Z) region on the reference grid and its description for the report.

    ``auto``: Otsu foreground of ``reference`` within ``valid``; ``none``: ``valid``; both lose
    ``edge_width`` slices at each end of the valid region along ``edge_axis``. A mask volume (> 0.5
    inside, any grid) is resampled nearest onto the reference grid and used as given.
    """
    info: dict[str, Any] = {"kind": mask if isinstance(mask, str) else "file"}
    if isinstance(mask, str):
        if mask == "auto":
            region, threshold = metrics.foreground_mask(spatial_array(reference), valid)
            info["otsu_threshold"] = threshold
        elif mask == "none":
            region = valid
        else:
            raise MedsrError(f"--mask {mask!r} must be auto, none or a mask file")
        region = metrics.exclude_edge_slabs(region, valid, edge_axis, edge_width)
    else:
        inside, covered, _ = on_reference_grid(mask, reference, order=0)
        region = valid & covered & (inside > 0.5)
        info["file"] = volume_name(mask)
    info.update(voxels=int(region.sum()), fraction=round(float(region.mean()), 6))
    return region, info


def _warnings(align: GridAlignment) -> list[str]:
    if np.any(align.offset_vox != 0.0):
        return [
            f"SR voxel centres are offset by {np.round(align.offset_vox, 4).tolist()} HR voxels from the HR "
            "grid; SR was resampled (linear) onto HR. A 0.5 offset usually means an affine written with the "
            "wrong voxel-centre convention"
        ]
    return []


def _snap(matrix: np.ndarray) -> np.ndarray:
    rounded = np.round(matrix)
    return np.where(np.abs(matrix - rounded) < INDEX_ATOL, rounded, matrix)


def spatial_array(volume: MetaTensor) -> np.ndarray:
    """The (X, Y, Z) float32 voxels of a one-channel volume."""
    data = volume.detach().cpu().as_subclass(torch.Tensor).numpy()
    if data.ndim == 4:
        if data.shape[0] != 1:
            raise MedsrError(
                f"{volume_name(volume)} has {data.shape[0]} channels; evaluation compares one volume"
            )
        data = data[0]
    return np.asarray(data, dtype=np.float32)


def volume_name(volume: MetaTensor) -> str:
    """The volume's source path, or 'volume'."""
    return str(volume.meta.get("filename_or_obj") or "volume")
