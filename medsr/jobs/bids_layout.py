"""The BIDS side of ``medsr bids``: file names and entities, finding anatomical images, metadata inheritance.

Pure path and JSON work (no voxels): a BIDS name is ``key-value`` entities joined by ``_``, then a suffix
and an extension, e.g. ``sub-01_ses-2_acq-ax_run-1_T2w.nii.gz``; anatomical images live in
``sub-<label>/[ses-<label>/]anat/``. A JSON sidecar applies to an image when it has the same suffix,
its entities are a subset of the image's, and it sits in the image's folder or one above it up to the
dataset root (the BIDS inheritance principle); nearer (more specific) files override farther ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError
from medsr.io.formats import NIFTI_SUFFIXES
from medsr.io.naming import read_sidecar

#: BIDS entities in their required order (BIDS 1.9 entity table); ``rec`` goes where it stands here.
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec", "dir",
    "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split", "recording",
    "chunk", "seg", "res", "den", "label", "desc",
)  # fmt: skip
#: Anatomical suffixes processed by default (structural contrasts that are often acquired in thick slices).
DEFAULT_SUFFIXES = ("T1w", "T2w", "FLAIR", "PDw", "T2starw")
#: The reconstruction label medsr outputs carry.
REC_LABEL = "medsr"

_ENTITY = re.compile(r"([a-zA-Z]+)-([a-zA-Z0-9]+)")
_SUFFIX = re.compile(r"[a-zA-Z0-9]+")


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: entities in file order, suffix and extension (``.nii.gz``, ``.json``)."""

    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str

    def get(self, key: str) -> str | None:
        return dict(self.entities).get(key)

    def render(self) -> str:
        return "_".join([*(f"{k}-{v}" for k, v in self.entities), self.suffix]) + self.extension


@dataclass(frozen=True)
class BidsImage:
    """An anatomical image found in a dataset: its path, relative path and parsed name."""

    path: Path
    relative: Path
    name: BidsName

    @property
    def subject(self) -> str:
        return self.name.get("sub") or ""


def parse_name(filename: str) -> BidsName | None:
    """The entities, suffix and extension of a BIDS file name, or None when it is not one."""
    lower = filename.lower()
    extension = next((ext for ext in (*NIFTI_SUFFIXES, ".json") if lower.endswith(ext)), None)
    if extension is None:
        return None
    parts = filename[: -len(extension)].split("_")
    *pairs, suffix = parts
    entities = [_ENTITY.fullmatch(p) for p in pairs]
    if not _SUFFIX.fullmatch(suffix) or any(m is None for m in entities):
        return None
    return BidsName(tuple((m.group(1), m.group(2)) for m in entities if m), suffix, extension)


def output_name(name: BidsName) -> str:
    """``name`` with ``rec-medsr`` in its place of the entity order and a ``.nii.gz`` extension.

    A source that already has ``rec-<label>`` becomes ``rec-<label>medsr`` (labels are alphanumeric):
    both reconstructions stay apart and the name still says where the image came from.
    """
    entities = list(name.entities)
    current = dict(entities).get("rec")
    if current is not None:
        entities = [(k, f"{v}{REC_LABEL}" if k == "rec" else v) for k, v in entities]
    else:
        rank = ENTITY_ORDER.index("rec")
        at = next(
            (i for i, (k, _) in enumerate(entities) if k in ENTITY_ORDER and ENTITY_ORDER.index(k) > rank),
            len(entities),
        )
        entities.insert(at, ("rec", REC_LABEL))
    return BidsName(tuple(entities), name.suffix, ".nii.gz").render()


def subject_labels(bids_dir: Path) -> list[str]:
    """Labels (without ``sub-``) of the subject folders of a dataset, sorted."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def choose_subjects(bids_dir: Path, labels: list[str] | None) -> list[str]:
    """The subjects to process: ``labels`` (with or without ``sub-``), all when None or empty."""
    found = subject_labels(bids_dir)
    if not found:
        raise MedsrError(
            f"{bids_dir} has no sub-<label> folders; is it the root of a BIDS dataset (the folder that "
            "holds dataset_description.json)?"
        )
    if not labels:
        return found
    wanted = [label.removeprefix("sub-") for label in labels]
    unknown = [label for label in wanted if label not in found]
    if unknown:
        raise MedsrError(
            f"--participant-label {' '.join(unknown)}: no such subject in {bids_dir}; it has "
            f"{', '.join(found)}"
        )
    return list(dict.fromkeys(wanted))


def find_images(bids_dir: Path, subjects: list[str], suffixes: tuple[str, ...]) -> list[BidsImage]:
    """NIfTI images ``sub-*/[ses-*/]anat/*_<suffix>.nii[.gz]`` of ``subjects``, sorted by path."""
    images = []
    for subject in subjects:
        folder = bids_dir / f"sub-{subject}"
        for anat in sorted([folder / "anat", *folder.glob("ses-*/anat")]):
            for path in sorted(anat.glob("*")) if anat.is_dir() else []:
                name = parse_name(path.name)
                if (
                    name is not None
                    and name.extension in NIFTI_SUFFIXES
                    and name.suffix in suffixes
                    and name.get("sub") == subject
                    and path.is_file()
                ):
                    images.append(BidsImage(path, path.relative_to(bids_dir), name))
    return images


def inherited_metadata(image: BidsImage, bids_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    """The image's JSON metadata merged by BIDS inheritance, and the files applied (farthest first)."""
    levels = [
        bids_dir,
        *(bids_dir / Path(*image.relative.parts[:i]) for i in range(1, len(image.relative.parts))),
    ]
    mine = set(image.name.entities)
    merged: dict[str, Any] = {}
    applied: list[Path] = []
    for level in levels:
        found = []
        for path in level.glob("*.json"):
            name = parse_name(path.name)
            if name is not None and name.suffix == image.name.suffix and set(name.entities) <= mine:
                found.append((len(name.entities), path))
        for _, path in sorted(found):
            merged.update(read_sidecar(path))
            applied.append(path)
    return merged, applied
