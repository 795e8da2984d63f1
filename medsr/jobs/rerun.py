"""When is an output finished? The settings a run was asked for, and the check a rerun makes against them.

``infer_one`` records the REQUESTED settings in the sidecar under ``"settings"`` (what the user asked for,
not what was resolved from it: a thickness read from a scan's sidecar or a factor computed from the
spacing can change with the input, which the input's SHA-256 already covers). A batch or BIDS rerun
redoes an output unless its sidecar holds the same input SHA-256 and the same settings.

Settings compared: method, factor, spacing, axis, thickness, profile, the model checkpoint's SHA-256 (a
retrained checkpoint at the same path counts as a change, a moved one does not), dtype, series and
volume index; for ``selfsup`` also budget_s, steps and seed, which change what the network learns. Not
compared: device, progress, --save-model and --preview, which change where or how the work runs, not
the output.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsr.io.naming import read_sidecar, sha256_of, sidecar_path

if TYPE_CHECKING:
    from medsr.jobs.options import InferOptions

#: Sidecar key of the requested settings.
SETTINGS_KEY = "settings"
#: SelfSupOptions fields that change a selfsup output.
TRAINING_KEYS = ("budget_s", "steps", "seed")
#: :func:`is_finished`'s reason when there is no output at all (a first run, not a redo).
NOT_WRITTEN = "not written yet"
#: :func:`is_finished`'s reason when the JSON sidecar beside the input changed (or came or went).
INPUT_SIDECAR_CHANGED = "input sidecar changed"


def requested_settings(opts: InferOptions) -> dict[str, Any]:
    """The settings of ``opts`` that decide the output, as JSON values (what the sidecar records)."""
    settings: dict[str, Any] = {
        "method": opts.method,
        "factor": opts.factor,
        "spacing": opts.spacing,
        "axis": opts.axis,
        "thickness": opts.thickness,
        "profile": opts.selfsup.profile if opts.selfsup is not None else None,
        "model_sha256": _file_sha256(Path(opts.model)) if opts.model is not None else None,
        "dtype": opts.dtype,
        "series": opts.series,
        "volume_index": opts.volume_index,
    }
    if opts.method == "selfsup":
        settings.update({key: getattr(opts.selfsup, key, None) for key in TRAINING_KEYS})
    return json.loads(json.dumps(settings, default=str))


def is_finished(output: Path, scan: Path, opts: InferOptions) -> str | None:
    """None when ``output`` is a finished run of ``scan`` with ``opts``, else why it is not (one phrase).

    Finished: the output and its medsr sidecar exist, and the sidecar records the input's SHA-256, that
    of the JSON sidecar beside the input (its slice thickness and profile shape the result; None when
    there is none) and the same :func:`requested_settings`. Reasons: :data:`NOT_WRITTEN`, ``"no sidecar (an interrupted
    run)"``, ``"no settings recorded"`` (a sidecar from before settings were recorded), ``"input
    changed"``, ``"input sidecar changed"``, and the changed settings, e.g. ``"factor 2 -> 4"``; several are joined with ``"; "``.
    """
    if not output.exists():
        return NOT_WRITTEN
    doc = read_sidecar(sidecar_path(output))
    if "medsr_version" not in doc:
        return "no sidecar, an interrupted run"
    recorded = doc.get(SETTINGS_KEY)
    if not isinstance(recorded, dict):
        return "no settings recorded"
    reasons = []
    if doc.get("input_sha256") != sha256_of(scan):
        reasons.append("input changed")
    if doc.get("input_sidecar_sha256") != input_sidecar_sha256(scan):
        reasons.append(INPUT_SIDECAR_CHANGED)
    reasons.extend(settings_changes(recorded, requested_settings(opts)))
    return "; ".join(reasons) or None


def input_sidecar_sha256(scan: Path) -> str | None:
    """SHA-256 of the JSON sidecar beside ``scan`` that the reader takes slice facts from, None if absent."""
    sidecar = sidecar_path(scan)
    return sha256_of(sidecar) if sidecar.is_file() else None


def settings_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key old -> new"`` for each setting that differs (None shows as ``default``)."""
    changes = []
    for key in [*new, *(k for k in old if k not in new)]:
        before, after = old.get(key), new.get(key)
        if not _same(before, after):
            changes.append(f"{key} {_show(before)} -> {_show(after)}")
    return changes


def _same(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _show(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a SHA-256: its start is enough to tell two apart
    return str(value)


def _file_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint, hashed once per file version (a batch asks for it for every scan)."""
    stat = path.stat()
    return _cached_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_of(Path(path))
