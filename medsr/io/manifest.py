"""Data manifests: CSV or JSONL lists of volumes (docs/manifests.md).

Columns: ``path`` (required, relative to the manifest's folder, absolute, or ``pkg:PACKAGE/sub/path``
for a file shipped inside an installed Python package, e.g. nilearn's MNI152), ``subject``, ``split``
(train/val/test), ``modality``, ``sha256``, ``spacing`` and ``shape`` (``x;y;z`` in CSV, lists in JSONL).

:func:`medsr.io.manifest_build.build_manifest` scans a folder and writes one.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError
from medsr.io.formats import MANIFEST_SUFFIXES, MANIFEST_WRITE_SUFFIXES

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
    elif name.endswith(MANIFEST_SUFFIXES):
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
    path = resolve_path(raw, manifest.parent)
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


#: Prefix of a path inside an installed Python package (``pkg:nilearn/datasets/data/x.nii.gz``).
PACKAGE_PREFIX = "pkg:"


def resolve_path(raw: str, folder: Path) -> Path:
    """A manifest path: ``pkg:PACKAGE/rest`` inside an installed package, else relative to ``folder``."""
    if raw.startswith(PACKAGE_PREFIX):
        import importlib.util

        package, _, rest = raw[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise MedsrError(
                f"manifest path {raw!r} needs the Python package {package!r}; install it (pip install {package})"
            )
        return Path(next(iter(spec.submodule_search_locations))) / rest
    path = Path(raw).expanduser()
    return path if path.is_absolute() else folder / path


def verify_row(row: ManifestRow) -> None:
    """Check that ``row.path`` exists and, when the manifest gives one, that its SHA-256 matches."""
    from medsr.io.naming import sha256_of

    if not row.path.exists():
        raise MedsrError(
            f"{row.path} is listed in the manifest but does not exist; fix the path or rebuild the manifest"
        )
    if row.sha256 and sha256_of(row.path) != row.sha256.lower():
        raise MedsrError(
            f"{row.path} does not match the manifest's sha256 {row.sha256[:12]}...: the file changed; rebuild "
            "the manifest (medsr manifest build) or set data.verify_sha256: false"
        )


def write_manifest(rows: list[ManifestRow], output: Path, *, overwrite: bool = False) -> Path:
    """Write ``rows`` as CSV (``.csv``) or JSONL (``.jsonl``), paths relative to the manifest's folder."""
    import io
    import os

    from medsr.io.atomic import atomic_output

    output = Path(output)
    name = output.name.lower()
    if not name.endswith(MANIFEST_WRITE_SUFFIXES):
        raise MedsrError(f"{output}: a manifest must be written as .csv or .jsonl")
    records = []
    for row in rows:
        rel = os.path.relpath(row.path.resolve(), output.resolve().parent)
        records.append(
            {
                "path": Path(rel).as_posix(),
                "subject": row.subject,
                "split": row.split,
                "modality": row.modality,
                "sha256": row.sha256,
                "spacing": list(row.spacing),
                "shape": list(row.shape),
            }
        )
    if name.endswith(".jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in records)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow(
                {
                    **r,
                    "spacing": ";".join(f"{v:.6g}" for v in r["spacing"]),
                    "shape": ";".join(map(str, r["shape"])),
                }
            )
        text = buffer.getvalue()
    with atomic_output(output, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return output
