"""Evaluation and benchmark results as JSON, console text and Markdown.

JSON has no infinity or NaN: :func:`jsonable` writes them as the strings ``"inf"``, ``"-inf"`` and
``"nan"`` (PSNR of identical volumes is ``"inf"``). The schemas are documented in docs/evaluation.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medsr.io.atomic import write_json

#: Benchmark table columns: (key in a method row, header, format).
TABLE = (
    ("psnr_db", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("nrmse", "NRMSE", "{:.4f}"),
    ("edge_sharpness", "edge sharpness", "{:.3f}"),
    ("seconds", "time (s)", "{:.1f}"),
    ("peak_rss_mb", "peak RSS (MB)", "{:.0f}"),
    ("peak_gpu_mb", "peak GPU (MB)", "{:.0f}"),
)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python types and non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(result: dict[str, Any]) -> str:
    """Indented JSON text of a result (strict JSON: no bare Infinity/NaN)."""
    return json.dumps(jsonable(result), indent=2, allow_nan=False)


def save_json(path: Path, result: dict[str, Any], *, overwrite: bool = True) -> Path:
    """Write ``result`` as strict JSON, atomically."""
    write_json(Path(path), jsonable(result), overwrite=overwrite)
    return Path(path)


def fmt(value: Any, pattern: str = "{:.4g}") -> str:
    """A number for a table: ``inf``/``nan`` spelled out, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    v = float(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return pattern.format(v)


def evaluation_text(result: dict[str, Any]) -> str:
    """Console summary of ``medsr evaluate`` (full-reference or no-reference)."""
    lines = [f"SR: {result['sr']}"]
    if "hr" in result:
        grid, m = result["grid"], result["metrics"]
        lines.append(f"HR: {result['hr']}")
        how = "same grid"
        if not grid["same_grid"]:
            exact = grid["interpolation"] == "none"
            how = "SR copied onto HR's grid (exact)" if exact else "SR resampled onto HR's grid (linear)"
        lines.append(
            f"grid: {how}, grid_offset_vox {grid['grid_offset_vox']}, "
            f"HR covered {grid['hr_voxels_covered_fraction']:.1%}"
        )
        lines.append(
            f"data range: {fmt(result['data_range']['value'])} ({result['data_range']['convention']})"
        )
        lines.append(
            f"PSNR {fmt(m['psnr_db'], '{:.2f}')} dB   SSIM {fmt(m['ssim'], '{:.4f}')}   NRMSE "
            f"{fmt(m['nrmse'], '{:.4f}')}   MAE {fmt(m['mae'])}   edge sharpness {fmt(m['edge_sharpness'], '{:.3f}')}"
        )
    else:
        m, d = result["metrics"], result["details"]
        lines.append(f"spacing (mm): {result['spacing_mm']}")
        lines.append(
            f"gradient ratio (through/in-plane) {fmt(m['gradient_ratio'], '{:.3f}')}   spectral ratio "
            f"{fmt(m['spectral_ratio'], '{:.3f}')} (band {fmt(d['band_cycles_per_mm'][0])}-"
            f"{fmt(d['band_cycles_per_mm'][1])} cycles/mm)"
        )
    axis = result["axis"]
    lines.append(f"upscaled axis: {axis['sr']} ({axis['direction']}, from {axis['source']})")
    mask = result["mask"]
    lines.append(f"mask: {mask['kind']}, {mask['voxels']} voxels ({mask['fraction']:.1%})")
    lines.extend(f"warning: {w}" for w in result.get("warnings", []))
    return "\n".join(lines)


def benchmark_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of benchmark rows (one per method); failed methods show their error."""
    keys = [k for k, _, _ in TABLE if k != "peak_gpu_mb" or any(r.get(k) is not None for r in rows)]
    heads = {k: h for k, h, _ in TABLE}
    pats = {k: p for k, _, p in TABLE}
    out = ["| method | " + " | ".join(heads[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for row in rows:
        if row.get("error"):
            out.append(f"| {row['name']} | failed: {row['error']} |" + " |" * (len(keys) - 1))
        else:
            out.append(f"| {row['name']} | " + " | ".join(fmt(row.get(k), pats[k]) for k in keys) + " |")
    return "\n".join(out)


def benchmark_markdown(result: dict[str, Any]) -> str:
    """report.md of ``medsr benchmark``: settings, machine, the table, conventions and the panels."""
    sim, machine, ev = result["simulation"], result["machine"], result["evaluation"]
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    lines = [
        f"# medsr benchmark: {Path(result['hr']).name}",
        "",
        f"`{result['command']}`",
        "",
        f"- date: {result['date']}; medsr {result['medsr_version']}, torch {machine['torch']}",
        f"- machine: {machine['cpu']}, {machine['nproc']} CPU cores{gpu}",
        f"- simulation: {sim['slice_thickness_mm']:g} mm {sim['profile']} slices every {sim['slice_spacing_mm']:g} mm "
        f"along axis {sim['axis']} ({sim['axis_direction']}), noise {sim['noise']}; LR shape {sim['lr_shape']}, "
        f"upscaled x{result['factor']:g}",
        f"- mask: {ev['mask']['kind']} ({ev['mask']['voxels']} voxels, first and last "
        f"{ev['mask'].get('edge_slab_hr_voxels', 0)} HR slices of the covered region excluded); data range "
        f"{fmt(ev['data_range']['value'])} ({ev['data_range']['convention']})",
        "",
        benchmark_table(result["methods"]),
        "",
        f"Time: wall seconds of the upscale call alone. Memory: {result['memory_measure']}",
        "",
        "Edge sharpness: mean |gradient| of SR over that of HR along the upscaled axis on the strongest HR "
        "edges (1 = as sharp as the truth). See docs/evaluation.md for every convention.",
        "",
    ]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in result.get("panels", [])]
    return "\n".join(lines) + "\n"
