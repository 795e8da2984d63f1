"""Data manifests: CSV or JSONL lists of volumes (docs/manifests.md).

Columns: ``path`` (required, relative to the manifest's folder or absolute), ``subject``, ``split``
(train/val/test), ``modality``, ``sha256``, ``spacing`` and ``shape`` (``x;y;z`` in CSV, lists in JSONL).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError

COLUMNS = ("path", "subject", "split", "modality", "sha256", "spacing", "shape")


@dataclass(frozen=True)
class ManifestRow:
    """One volume of a manifest; ``path`` is resolved against the manifest's folder."""

    path: Path
    subject: str = ""
    split: str = ""
    modality: str = ""
    sha256: str = ""
    spacing: tuple[float, ...] = ()
    shape: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def read_manifest(manifest: Path) -> list[ManifestRow]:
    """Rows of a ``.csv``/``.tsv`` or ``.jsonl`` manifest, in file order."""
    name = manifest.name.lower()
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MedsrError(f"{manifest}: cannot read the manifest ({err})") from None
    if name.endswith(".jsonl"):
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise MedsrError(f"{manifest}, line {number}: not valid JSON ({err.msg})") from None
    elif name.endswith((".csv", ".tsv")):
        records = list(csv.DictReader(text.splitlines(), delimiter="\t" if name.endswith(".tsv") else ","))
    else:
        raise MedsrError(f"{manifest}: a manifest must be .csv, .tsv or .jsonl")
    rows = [_row(manifest, number, record) for number, record in enumerate(records, start=2)]
    if not rows:
        raise MedsrError(f"{manifest}: the manifest lists no volumes")
    return rows


def _row(manifest: Path, number: int, record: dict[str, Any]) -> ManifestRow:
    raw = (record.get("path") or "").strip() if isinstance(record.get("path"), str) else ""
    if not raw:
        raise MedsrError(f"{manifest}, row {number}: missing 'path' (columns: {', '.join(COLUMNS)})")
    path = Path(raw)
    if not path.is_absolute():
        path = manifest.parent / path
    return ManifestRow(
        path=path,
        subject=str(record.get("subject") or ""),
        split=str(record.get("split") or ""),
        modality=str(record.get("modality") or ""),
        sha256=str(record.get("sha256") or ""),
        spacing=_numbers(record.get("spacing"), float),
        shape=_numbers(record.get("shape"), int),
        extra={k: v for k, v in record.items() if k not in COLUMNS},
    )


def _numbers(value: Any, kind: type) -> tuple:
    if value in (None, ""):
        return ()
    parts = value if isinstance(value, list) else str(value).replace(",", ";").split(";")
    return tuple(kind(float(p)) if kind is int else kind(p) for p in parts if str(p).strip())
