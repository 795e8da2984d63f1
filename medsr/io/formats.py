"""File formats by name and by first bytes: the one place for medsr's suffix tables and DICOM detection.

Standard library only, so the CLI and the folder scanners can use it without loading nibabel or pydicom.
"""

from __future__ import annotations

from pathlib import Path

from medsr.errors import MedsrError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: ITK formats medsr writes (a detached ``.nhdr`` header is read, never written).
ITK_WRITE_SUFFIXES = (".nrrd", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".ima")
#: Single files holding a whole volume (a DICOM series is a folder).
VOLUME_SUFFIXES = (*NIFTI_SUFFIXES, *ITK_SUFFIXES)
#: Manifests medsr reads (``.csv``/``.tsv``/``.jsonl``); it writes ``.csv`` and ``.jsonl``.
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".tsv")
MANIFEST_WRITE_SUFFIXES = (".csv", ".jsonl")
#: Suffixes an output name drops (``scan.nii.gz`` -> ``scan``); ``.ima`` is kept, as it always was.
_STRIPPED_SUFFIXES = (*VOLUME_SUFFIXES, ".dcm")
#: First two bytes of a DICOM dataset without the 128-byte preamble: a group 0002 or 0008 tag.
DATASET_STARTS = (b"\x02\x00", b"\x08\x00")


def volume_format(path: Path) -> str:
    """``nifti``, ``nrrd``, ``mha``, ``mhd``, ``dicom`` from a path's suffix (a folder is a DICOM series)."""
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "nhdr" if name.endswith(".nhdr") else name.rsplit(".", 1)[-1]
    if name.endswith(DICOM_SUFFIXES) or "." not in name:
        return "dicom"
    raise MedsrError(
        f"{path}: unknown volume format {path.suffix!r}; medsr reads .nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd "
        "and DICOM series (a folder or .dcm files)"
    )


def strip_volume_suffix(name: str) -> str:
    """``name`` without its volume suffix (``scan.nii.gz`` -> ``scan``, ``IM_1.dcm`` -> ``IM_1``)."""
    for suffix in _STRIPPED_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def looks_dicom(path: Path) -> bool:
    """True for a ``.dcm``/``.ima`` name, a DICOM Part 10 file ('DICM' at byte 128), or an older file
    without the preamble that starts with a group 0002 or 0008 tag (the rule :mod:`medsr.io.dicom` reads by).
    """
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with path.open("rb") as handle:
            start = handle.read(132)
    except OSError:
        return False
    return start[128:132] == b"DICM" or start[:2] in DATASET_STARTS


def holds_dicom(folder: Path) -> bool:
    """True when one of ``folder``'s own files (not sub-folders) looks like DICOM."""
    return any(looks_dicom(f) for f in folder.iterdir() if f.is_file())
