"""Run records: ``metrics.csv`` (one row per logged step), TensorBoard when installed, ``summary.json``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = (
    "step",
    "loss",
    "lr",
    "steps_per_s",
    "val_psnr",
    "val_psnr_cubic",
    "val_ssim",
    "val_ssim_cubic",
    "elapsed_s",
)


class MetricsLog:
    """Append rows to ``run/metrics.csv`` (and TensorBoard scalars if ``tensorboard`` is installed).

    Resuming at step ``s`` first drops rows logged after ``s`` by the interrupted run.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        if resume_step is not None and self.path.exists():
            with self.path.open(newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            self._write(kept, "w")
        elif not self.path.exists() or resume_step is None:
            self._write([], "w")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def log(self, step: int, values: dict[str, Any]) -> None:
        row = {"step": step, **{k: _fmt(v) for k, v in values.items() if k in COLUMNS}}
        self._write([row], "a")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        with self.path.open(mode, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
