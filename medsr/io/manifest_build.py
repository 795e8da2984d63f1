"""``build_manifest``: scan a folder of volumes, check each opens, split by subject (docs/manifests.md).

Volumes are NIfTI/NRRD/MHA files and DICOM series folders (a folder whose own files are DICOM),
found recursively. A volume's subject is, in order: the group of ``subject_regex`` matched against
its path relative to the folder; a BIDS ``sub-XX`` component; the first sub-folder name for nested
layouts; else the file name without its suffix. Splits are assigned per subject (never splitting
one subject's volumes across train/val/test) by sorting subjects on a seeded SHA-256 of their id,
so adding subjects later moves few of the old ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medsr.errors import MedsrError
from medsr.io.formats import VOLUME_SUFFIXES, holds_dicom
from medsr.io.manifest import ManifestRow

_BIDS_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")


@dataclass
class BuildReport:
    """Rows that opened, and ``(path, reason)`` for each that did not."""

    rows: list[ManifestRow] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def find_volumes(folder: Path) -> list[Path]:
    """Volume files and DICOM series folders under ``folder`` (recursive, sorted, hidden entries skipped)."""
    found: list[Path] = []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        name = path.name.lower()
        if path.is_file() and name.endswith(VOLUME_SUFFIXES) or path.is_dir() and holds_dicom(path):
            found.append(path)
    if holds_dicom(folder):
        found.insert(0, folder)
    return found


def subject_of(path: Path, folder: Path, subject_regex: str | None = None) -> str:
    """The subject id of ``path`` (see the module docstring for the rules)."""
    rel = path.relative_to(folder) if path != folder else Path(path.name)
    if subject_regex:
        match = re.search(subject_regex, rel.as_posix())
        if not match:
            raise MedsrError(f"--subject-regex {subject_regex!r} does not match {rel.as_posix()}")
        return match.group(1) if match.groups() else match.group(0)
    for part in rel.parts:
        if _BIDS_SUBJECT.match(part):
            return part
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.name.split(".")[0]


def assign_splits(subjects: list[str], val: float, test: float, seed: int = 0) -> dict[str, str]:
    """``subject -> train|val|test``: seeded hash order, ``round(fraction * n)`` subjects each (>= 1 train)."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise MedsrError(f"--val {val} and --test {test} must be fractions in [0, 1) summing to less than 1")
    unique = sorted(set(subjects), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(unique)
    n_val = max(1, round(val * n)) if val > 0 and n >= 2 else 0
    n_test = max(1, round(test * n)) if test > 0 and n >= 3 else 0
    while n_val + n_test >= n and (n_val or n_test):
        if n_test:
            n_test -= 1
        else:
            n_val -= 1
    split = {s: "val" for s in unique[:n_val]}
    split.update({s: "test" for s in unique[n_val : n_val + n_test]})
    split.update({s: "train" for s in unique[n_val + n_test :]})
    return split


def build_manifest(
    folder: Path,
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    modality: str = "",
    subject_regex: str | None = None,
    checksum: bool = True,
    split: str | None = None,
    on_volume: Callable[[Path], None] | None = None,
) -> BuildReport:
    """Open every volume under ``folder``; rows (path, subject, split, modality, sha256, spacing, shape).

    ``split`` puts every volume in that split (for data sets that come with their own split folders).
    """
    from medsr import geometry
    from medsr.io.naming import sha256_of
    from medsr.io.readers import load_volume
    from medsr.io.volume import affine_of, spatial_shape

    folder = Path(folder)
    if not folder.is_dir():
        raise MedsrError(f"{folder}: not a folder; medsr manifest build scans a folder of volumes")
    report = BuildReport()
    found: list[tuple[Path, str, str, tuple[float, ...], tuple[int, ...]]] = []
    for path in find_volumes(folder):
        if on_volume is not None:
            on_volume(path)
        try:
            subject = subject_of(path, folder, subject_regex)
            volume = load_volume(path)
        except (MedsrError, OSError, ValueError) as err:
            report.failures.append((path, " ".join(str(err).split())))
            continue
        spacing = tuple(round(float(v), 6) for v in geometry.voxel_sizes(affine_of(volume)))
        kind = str(volume.meta.get("modality") or modality)
        found.append((path, subject, kind, spacing, spatial_shape(volume)))
        del volume
    if not found:
        detail = f" ({len(report.failures)} failed to open)" if report.failures else ""
        raise MedsrError(f"{folder}: no readable NIfTI/NRRD/MHA volumes or DICOM series found{detail}")
    if split is not None:
        splits = {f[1]: split for f in found}
    else:
        splits = assign_splits([f[1] for f in found], val, test, seed)
    for path, subject, kind, spacing, shape in found:
        digest = sha256_of(path) if checksum else ""
        report.rows.append(ManifestRow(path, subject, splits[subject], kind, digest, spacing, shape))
    return report
