"""``medsr bids``: a BIDS App that upscales the thick-slice anatomical images of a dataset.

Participant level: each ``sub-*/[ses-*/]anat/*_<suffix>.nii[.gz]`` of the chosen subjects whose slice
spacing is coarser than in-plane goes through :func:`medsr.jobs.infer.infer_one` (the job of
``medsr infer``) into ``OUTPUT_DIR/<same folders>/<name with rec-medsr>.nii.gz``, with a BIDS JSON
sidecar: ``Sources`` (a ``bids:raw:`` URI), ``SourceMetadata`` and the facts ``infer_one`` writes. A rerun
skips an image exactly as ``medsr infer`` skips a batch scan (:func:`medsr.jobs.rerun.is_finished`).
Group level: one TSV row per output, read from the sidecars.

Not upscaled (listed with the reason): isotropic images (no thick axis, :func:`medsr.geometry.through_plane_axis`)
and, unless ``include_3d``, 3D acquisitions (``MRAcquisitionType`` 3D): their slices are partitions of
a 3D encoding whose through-plane blur is not the 2D slice profile medsr models (often they are thin
already).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError
from medsr.io.atomic import atomic_output, write_json
from medsr.io.naming import read_sidecar, sidecar_path
from medsr.jobs.bids_layout import (
    DEFAULT_SUFFIXES,
    BidsImage,
    choose_subjects,
    find_images,
    inherited_metadata,
    output_name,
)
from medsr.jobs.infer import infer_one, reason_of, rerun_plan
from medsr.jobs.options import InferOptions
from medsr.jobs.rerun import INPUT_SIDECAR_CHANGED, SETTINGS_KEY, is_finished

BIDS_VERSION = "1.9.0"
#: Name of the raw dataset in ``DatasetLinks``, and so in the ``bids:raw:`` URIs of ``Sources``.
RAW = "raw"
GROUP_TABLE = "medsr_group.tsv"
GROUP_COLUMNS = (
    "output", "source", "method", "factor", "axis", "thickness_mm", "thickness_source", "profile", "dtype",
    "input_shape", "output_shape", "wall_seconds", "medsr_version", "settings",
)  # fmt: skip


@dataclass
class BidsSummary:
    """Outcome of a participant run; ``redone`` and ``ignored`` carry reasons, ``failed`` the error."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    redone: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)


def run_participant(
    bids_dir: Path,
    output_dir: Path,
    opts: InferOptions,
    *,
    labels: list[str] | None = None,
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES,
    include_3d: bool = False,
    progress: bool = True,
) -> BidsSummary:
    """Upscale the thick-slice anatomical images of ``labels`` (all subjects when None) into ``output_dir``.

    One image's failure is recorded and the others go on; an interruption stops the run.
    """
    from rich.progress import Progress

    check_output_dir(bids_dir, output_dir)
    images = find_images(bids_dir, choose_subjects(bids_dir, labels), tuple(suffixes))
    output_dir.mkdir(parents=True, exist_ok=True)
    write_description(bids_dir, output_dir)
    summary = BidsSummary()
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("medsr bids", total=len(images))
        for image in images:
            try:
                _run_image(image, bids_dir, output_dir, opts, include_3d, summary)
            except Exception as err:  # one bad image must not stop the dataset
                summary.failed.append((image.relative, reason_of(err)))
            bar.advance(task)
    return summary


def _run_image(
    image: BidsImage,
    bids_dir: Path,
    output_dir: Path,
    opts: InferOptions,
    include_3d: bool,
    summary: BidsSummary,
) -> None:
    meta, applied = inherited_metadata(image, bids_dir)
    sizes = _voxel_sizes(image.path)
    why_not = _not_thick(sizes, meta, include_3d)
    if why_not:
        summary.ignored.append((image.relative, why_not))
        return
    _note_spacing(image, meta, max(sizes), summary)
    image_opts, source = _with_slice_thickness(image, meta, applied, opts)
    output = output_dir / image.relative.parent / output_name(image.name)
    run_opts, redone = rerun_plan(
        output, image_opts, lambda: _bids_unfinished(output, image, image_opts, meta)
    )
    if run_opts is None:
        summary.skipped.append(image.relative)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    infer_one(image.path, output, run_opts)
    facts = read_sidecar(sidecar_path(output))
    if source is not None:
        facts["thickness_source"] = str(source)  # infer_one saw it as given: name the file it came from
    bids_fields = {
        "Sources": [f"bids:{RAW}:{image.relative.as_posix()}"],
        "Description": f"Through-plane super-resolution by medsr ({facts.get('method')}, factor "
        f"{facts.get('effective_factor', 0):.4g} along array axis {facts.get('axis')})",
        "SourceMetadata": [p.relative_to(bids_dir).as_posix() for p in applied],
        "SourceSliceThickness": meta.get("SliceThickness"),
    }
    write_json(sidecar_path(output), {**bids_fields, **facts}, overwrite=True)
    summary.done.append(output.relative_to(output_dir))
    if redone is not None:
        summary.redone.append((image.relative, redone))


def _bids_unfinished(output: Path, image: BidsImage, opts: InferOptions, meta: dict[str, Any]) -> str | None:
    """:func:`is_finished`, plus the BIDS fields: they are written last, and a changed SliceThickness in
    any JSON sidecar that applies (the input's hash covers only the image) redoes the output too.
    """
    why = is_finished(output, image.path, opts)
    recorded = read_sidecar(sidecar_path(output))
    if why is None and "Sources" not in recorded:
        return "no BIDS sidecar fields, an interrupted run"
    thickness_changed = recorded.get("SourceSliceThickness") != meta.get("SliceThickness")
    if "Sources" in recorded and thickness_changed and why in (None, INPUT_SIDECAR_CHANGED):
        return f"SliceThickness {recorded.get('SourceSliceThickness')} -> {meta.get('SliceThickness')} in the JSON sidecars"
    return why


def _voxel_sizes(path: Path) -> list[float]:
    """Voxel sizes in mm from the NIfTI header (no voxels are read)."""
    import nibabel as nib

    from medsr import geometry

    try:
        affine = nib.load(str(path)).affine
    except Exception as err:  # nibabel raises its own types for damaged files
        raise MedsrError(f"{path}: not a readable NIfTI file ({' '.join(str(err).split())})") from err
    return [float(s) for s in geometry.voxel_sizes(affine)]


def _not_thick(sizes: list[float], meta: dict[str, Any], include_3d: bool) -> str | None:
    """Why an image of voxel ``sizes`` (mm) is not upscaled (isotropic, or a 3D acquisition), or None."""
    from medsr import geometry

    thick = max(sizes)
    rest = sorted(sizes)[:2]
    if thick <= max(rest) * (1.0 + geometry.ISOTROPY_RTOL):  # the rule of geometry.through_plane_axis
        shown = " x ".join(f"{s:.3g}" for s in sizes)
        return f"isotropic ({shown} mm): no thick slices to upscale"
    if str(meta.get("MRAcquisitionType", "")).upper() == "3D" and not include_3d:
        return "3D acquisition (MRAcquisitionType 3D): its slices are not thick 2D slices; --include-3d upscales it"
    return None


def _note_spacing(image: BidsImage, meta: dict[str, Any], spacing: float, summary: BidsSummary) -> None:
    """Note a ``SpacingBetweenSlices`` that disagrees with the header's slice ``spacing`` (mm), which medsr uses."""
    from medsr.io.slice_facts import positive_mm

    gap = positive_mm(meta.get("SpacingBetweenSlices"))
    if gap is not None and abs(gap - spacing) > 0.01 * spacing:
        note = f"SpacingBetweenSlices {gap:g} mm differs from the header's slice spacing {spacing:g} mm; using the header"
        summary.notes.append((image.relative, note))


def _with_slice_thickness(
    image: BidsImage, meta: dict[str, Any], applied: list[Path], opts: InferOptions
) -> tuple[InferOptions, Path | None]:
    """``opts`` with an inherited ``SliceThickness`` when neither --thickness nor the image's own sidecar
    gives one, and the file it came from (None when nothing was passed on).

    The sidecar beside the image is read by the loader itself (:mod:`medsr.io.slice_facts`); only a value
    from a file higher up needs passing on.
    """
    from medsr.io.slice_facts import positive_mm

    thickness = positive_mm(meta.get("SliceThickness"))
    if (
        opts.thickness is not None
        or thickness is None
        or "SliceThickness" in read_sidecar(sidecar_path(image.path))
    ):
        return opts, None
    source = next(p for p in reversed(applied) if "SliceThickness" in read_sidecar(p))
    return dataclasses.replace(opts, thickness=thickness), source


def check_output_dir(bids_dir: Path, output_dir: Path) -> None:
    """Refuse to write into the raw dataset itself (only its ``derivatives/`` folder is for outputs)."""
    raw, out = bids_dir.resolve(), output_dir.resolve()
    if out == raw or (raw in out.parents and (raw / "derivatives") not in (out, *out.parents)):
        raise MedsrError(
            f"OUTPUT_DIR {output_dir} is inside the BIDS dataset {bids_dir}; medsr does not write into a raw "
            f"dataset: use {bids_dir / 'derivatives' / 'medsr'} or a folder outside it"
        )


def write_description(bids_dir: Path, output_dir: Path) -> Path:
    """``dataset_description.json`` of the derivative dataset (refusing to replace another dataset's)."""
    from medsr import __version__

    path = output_dir / "dataset_description.json"
    if path.exists():
        generated = read_sidecar(path).get("GeneratedBy") or []
        if not any(isinstance(g, dict) and g.get("Name") == "medsr" for g in generated):
            raise MedsrError(
                f"{path} exists and was not written by medsr: {output_dir} is another dataset; choose another "
                "OUTPUT_DIR"
            )
    raw_name = read_sidecar(bids_dir / "dataset_description.json").get("Name") or bids_dir.resolve().name
    doc = {
        "Name": f"{raw_name}: medsr through-plane super-resolution",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "medsr",
                "Version": __version__,
                "Description": "Through-plane super-resolution of thick-slice anatomical images",
            }
        ],
        "DatasetLinks": {RAW: os.path.relpath(bids_dir.resolve(), output_dir.resolve())},
    }
    write_json(path, doc, overwrite=True)
    return path


def run_group(output_dir: Path) -> tuple[Path, int]:
    """Write ``output_dir/medsr_group.tsv``: one row per medsr output, from its sidecar; returns (path, rows)."""
    rows = []
    for sidecar in sorted(output_dir.glob("sub-*/**/anat/*.json")):
        facts = read_sidecar(sidecar)
        image = sidecar.with_name(sidecar.name[: -len(".json")] + ".nii.gz")
        if "medsr_version" in facts and SETTINGS_KEY in facts and image.exists():
            rows.append(_group_row(image.relative_to(output_dir).as_posix(), facts))
    if not rows:
        raise MedsrError(
            f"{output_dir} holds no medsr outputs (sub-*/anat/*.nii.gz with a medsr sidecar); run the "
            "participant level first"
        )
    path = output_dir / GROUP_TABLE
    lines = ["\t".join(GROUP_COLUMNS), *("\t".join(row) for row in rows)]
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, len(rows)


def _group_row(output: str, facts: dict[str, Any]) -> list[str]:
    import json

    values = {**facts, "output": output, "source": " ".join(facts.get("Sources") or [])}
    values["factor"] = facts.get("effective_factor", facts.get("factor"))
    values["profile"] = facts.get("profile") or (facts.get(SETTINGS_KEY) or {}).get("profile")
    row = []
    for column in GROUP_COLUMNS:
        value = values.get(column)
        if isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, float):
            value = f"{value:.6g}"
        row.append("n/a" if value is None else " ".join(str(value).split()))
    return row
