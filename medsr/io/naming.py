"""Output names, sidecar paths (and reading them) and input fingerprints."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError
from medsr.io.formats import strip_volume_suffix

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stem(path: Path) -> str:
    """File name without its volume suffix (``scan.nii.gz`` -> ``scan``); a folder keeps its name."""
    return strip_volume_suffix(path.name)


def safe_name(text: str, fallback: str = "volume") -> str:
    """A file-name-safe version of ``text``, e.g. from DICOM tags.

    Only ``A-Z a-z 0-9 . _ -`` survive (anything else becomes ``_``); no leading dot or dash (hidden
    files, names read as options), at most 120 characters, never empty, ``.`` or ``..``.
    """
    cleaned = _UNSAFE.sub("_", text).lstrip("._-").rstrip("._")
    return cleaned[:120] or fallback


def default_output(scan: Path, tag: str = "medsr", folder: Path | None = None) -> Path:
    """``<stem>_<tag>.nii.gz`` beside ``scan`` (or in ``folder``); a DICOM folder gives ``<folder>_<tag>/``."""
    where = folder if folder is not None else scan.parent
    if scan.is_dir():
        return where / f"{safe_name(scan.name)}_{tag}"
    return where / f"{safe_name(stem(scan))}_{tag}.nii.gz"


def sidecar_path(output: Path) -> Path:
    """JSON sidecar beside an output: ``x.nii.gz`` -> ``x.json``, folder ``x/`` -> ``x.json``."""
    return output.with_name(stem(output) + ".json")


def check_sidecar(output: Path, *, overwrite: bool) -> Path:
    """The sidecar path of ``output``, once it is sure that writing it there takes nothing from another file.

    Refuses (MedsrError) when that path holds a file medsr did not write (unless ``overwrite``), or the
    sidecar of another output that still exists, e.g. ``s.json`` of ``s.mha`` when writing ``s.nrrd``:
    that is not this output's sidecar to replace, even with ``overwrite`` (docs/outputs.md).
    """
    sidecar = sidecar_path(output)
    doc = read_sidecar(sidecar)
    if sidecar.exists() and not overwrite and "medsr_version" not in doc:
        raise MedsrError(
            f"{sidecar} exists and is not a medsr sidecar; medsr writes the JSON sidecar of {output.name} "
            "there: move that file, choose another -o, or pass --overwrite"
        )
    recorded = doc.get("output")
    if isinstance(recorded, str) and recorded.strip():
        owner = sidecar.with_name(Path(recorded).name)  # a sidecar lies beside its output
        if owner.name != output.name and (owner.exists() or owner.is_symlink()):
            raise MedsrError(
                f"{sidecar} is the sidecar of {owner}, and {output} would need the same sidecar; medsr does "
                f"not replace another output's sidecar, even with --overwrite: choose another -o name, "
                f"e.g. {_other_name(output)}"
            )
    return sidecar


def _other_name(output: Path) -> Path:
    """A name beside ``output`` whose sidecar differs: ``s.nrrd`` -> ``s_nrrd.nrrd``, folder ``s`` -> ``s_2``."""
    base = stem(output)
    suffix = output.name[len(base) :]
    tag = suffix.lstrip(".").split(".")[0] or "2"
    return output.with_name(f"{base}_{tag}{suffix}")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar at ``path`` as a dict; {} when absent, unreadable or not a JSON object."""
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return {}
    return doc if isinstance(doc, dict) else {}


def sha256_of(source: Path) -> str:
    """SHA-256 of a file, or of a folder's files in sorted relative-path order (names and bytes)."""
    digest = hashlib.sha256()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for file in files:
        if source.is_dir():
            digest.update(str(file.relative_to(source)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
