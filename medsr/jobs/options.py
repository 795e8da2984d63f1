"""What the infer job does with each scan: the options ``medsr infer``, ``medsr bids`` and batches share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    learner: dict[str, Any] = field(default_factory=dict)
