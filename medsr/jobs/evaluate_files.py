"""``medsr evaluate``'s job: read the SR (and HR, mask) files and SR's sidecar, then evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.data import MetaTensor

from medsr.errors import MedsrError
from medsr.evaluation.compare import evaluate_volumes
from medsr.evaluation.noref import no_reference
from medsr.io.naming import read_sidecar, sidecar_path
from medsr.io.readers import load_volume


def evaluate_files(
    sr_path: Path,
    hr_path: Path | None = None,
    *,
    mask: str = "auto",
    axis: str | None = None,
    factor: float | None = None,
) -> dict[str, Any]:
    """``medsr evaluate``: read the files (and SR's JSON sidecar) and evaluate, with or without HR.

    ``mask`` is ``auto``, ``none`` or the path of a mask volume. The sidecar ``<stem>.json`` that
    ``medsr infer`` writes beside SR supplies the upscaled ``axis`` and ``factor`` unless given.
    """
    facts = read_sidecar(sidecar_path(Path(sr_path)))
    mask_arg: str | MetaTensor = mask
    if mask not in ("auto", "none"):
        if not Path(mask).exists():
            raise MedsrError(f"--mask {mask}: no such file; give auto, none or a mask volume")
        mask_arg = load_volume(mask)
    sr = load_volume(sr_path)
    if hr_path is None:
        return no_reference(sr, axis=axis, mask=mask_arg, facts=facts)
    return evaluate_volumes(sr, load_volume(hr_path), mask=mask_arg, axis=axis, factor=factor, facts=facts)
