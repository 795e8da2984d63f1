"""What the infer job does with each scan: the options ``medsr infer``, ``medsr bids`` and batches share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medsr.inference.options import SelfSupOptions


@dataclass(frozen=True)
class InferOptions:
    """What to do with each scan (see ``medsr infer --help``)."""

    factor: float | None = None
    spacing: float | None = None
    axis: str | None = None
    method: str = "selfsup"
    thickness: float | None = None
    model: Path | None = None
    dtype: str | None = None  # None: the output format's natural default (medsr.io.writers.resolve_dtype)
    overwrite: bool = False
    series: str | None = None
    volume_index: int | None = None
    preview: Path | None = None
    selfsup: SelfSupOptions | None = (
        None  # how selfsup learns; a trained --model takes its device and progress
    )
