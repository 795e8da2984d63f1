"""Output names, sidecar paths (and reading them) and input fingerprints."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

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
